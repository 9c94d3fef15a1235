namespace LoraRuntime;

public abstract partial class Backend
{
    /// <summary>
    /// C = α·op(A)·op(B) + β·C in float32 (see <see cref="GemmProblem"/>). Validates everything first: shapes,
    /// leading dimensions, extents against the tensors, and that C shares no memory with A or B.
    /// </summary>
    public void Gemm(in GemmProblem problem)
    {
        GemmValidation.Validate(this, problem, "problem", 1, 0, 0, 0);
        GemmCore(problem);
    }

    /// <summary>
    /// The GEMM of <see cref="Gemm(in GemmProblem)"/> in BLAS's argument order.
    /// </summary>
    public void Gemm(Transpose transA, Transpose transB, int m, int n, int k, float alpha,
        Tensor a, long offsetA, int lda, Tensor b, long offsetB, int ldb, float beta, Tensor c, long offsetC, int ldc)
    {
        var p = new GemmProblem
        {
            TransA = transA, TransB = transB, M = m, N = n, K = k, Alpha = alpha, Beta = beta,
            A = a, OffsetA = offsetA, Lda = lda, B = b, OffsetB = offsetB, Ldb = ldb, C = c, OffsetC = offsetC, Ldc = ldc,
        };
        Gemm(p);
    }

    /// <summary>
    /// Matrix product of whole tensors: <paramref name="c"/> [M, N] = α·op(a)·op(b) + β·c. Tensors of rank
    /// above 2 are read as matrices of (product of leading dimensions) × (last dimension), so a [B, T, C]
    /// activation times a [OC, C] weight with <paramref name="transB"/> = Yes gives [B, T, OC].
    /// </summary>
    public void MatMul(Tensor c, Tensor a, Tensor b, Transpose transA = Transpose.No, Transpose transB = Transpose.No,
        float alpha = 1f, float beta = 0f)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(c);
        int aRows = checked((int)a.Shape.Rows), aCols = a.Shape.Last;
        int bRows = checked((int)b.Shape.Rows), bCols = b.Shape.Last;
        int m = transA == Transpose.No ? aRows : aCols;
        int k = transA == Transpose.No ? aCols : aRows;
        int kb = transB == Transpose.No ? bRows : bCols;
        int n = transB == Transpose.No ? bCols : bRows;
        if (k != kb)
            throw new ArgumentException(
                $"b: op(a) is {m}×{k} (a {a.Shape}, trans {transA}) so op(b) needs {k} rows, but b {b.Shape} (trans {transB}) gives {kb}", nameof(b));
        if (c.Shape.Rows != m || c.Shape.Last != n)
            throw new ArgumentException(
                $"c: expected a {m}×{n} result for a {a.Shape} (trans {transA}) times b {b.Shape} (trans {transB}), got c {c.Shape}", nameof(c));
        Gemm(new GemmProblem(c, a, b, m, n, k, transA, transB, alpha, beta));
    }

    /// <summary>
    /// <paramref name="batchCount"/> GEMMs of the same shape; problem i uses offsets advanced by i times the strides.
    /// C's batches must not overlap one another.
    /// </summary>
    public void GemmStridedBatched(in GemmProblem problem, long strideA, long strideB, long strideC, int batchCount)
    {
        GemmValidation.Validate(this, problem, "problem", batchCount, strideA, strideB, strideC);
        if (batchCount == 0) return;
        GemmStridedBatchedCore(problem, strideA, strideB, strideC, batchCount);
    }

    /// <summary>
    /// Several independent GEMMs of different sizes in one call (the many-adapters case). All problems are
    /// validated before any is computed; no C may share memory with another problem's A, B or C.
    /// </summary>
    public void GemmGrouped(ReadOnlySpan<GemmProblem> problems)
    {
        for (int i = 0; i < problems.Length; i++)
            GemmValidation.Validate(this, problems[i], "problems", 1, 0, 0, 0, i);
        GemmValidation.NoCrossOverlap(problems);
        if (problems.Length > 0) GemmGroupedCore(problems);
    }

    /// <summary>One validated GEMM.</summary>
    protected abstract void GemmCore(in GemmProblem problem);

    /// <summary>A validated strided batch (batchCount ≥ 1).</summary>
    protected abstract void GemmStridedBatchedCore(in GemmProblem problem, long strideA, long strideB, long strideC, int batchCount);

    /// <summary>A validated, non-empty group.</summary>
    protected abstract void GemmGroupedCore(ReadOnlySpan<GemmProblem> problems);
}

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
        float alpha = 1f, float beta = 0f) =>
        Gemm(MatMulProblem(c, a, b, transA, transB, alpha, beta));

    /// <summary>
    /// <paramref name="c"/> [M, N] = op(a)·op(b) + bias, <paramref name="bias"/> [N] added to every row: a linear layer's
    /// forward pass in one call (torch.addmm's form; cuBLASLt's BIAS epilogue). Same shapes as <see cref="MatMul"/>;
    /// each element is rounded as the product followed by <see cref="AddBias"/> would round it.
    /// </summary>
    public void MatMulAddBias(Tensor c, Tensor a, Tensor b, Tensor bias, Transpose transA = Transpose.No, Transpose transB = Transpose.No)
    {
        var problem = MatMulProblem(c, a, b, transA, transB, 1f, 0f);
        Check.Tensors(this, DType.F32, [bias], [nameof(bias)]);
        Check.OnePerColumn(bias, nameof(bias), c, nameof(c));
        Check.Disjoint(1, [c, bias], [nameof(c), nameof(bias)]);
        GemmValidation.Validate(this, problem, "problem", 1, 0, 0, 0);
        GemmAddBiasCore(problem, bias);
    }

    /// <summary>The <see cref="GemmProblem"/> of <see cref="MatMul"/>: shapes read from the tensors and checked.</summary>
    private static GemmProblem MatMulProblem(Tensor c, Tensor a, Tensor b, Transpose transA, Transpose transB, float alpha, float beta)
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
        return new GemmProblem(c, a, b, m, n, k, transA, transB, alpha, beta);
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

    /// <summary>
    /// Packs B = op(<paramref name="source"/>) (a matrix: a [K, N] tensor, or [N, K] with <paramref name="trans"/> = Yes,
    /// such as a [OC, C] weight whose transpose is the projection's B) into this backend's fastest layout for
    /// <see cref="GemmPacked"/>. Load-time work: it may pass through host memory.
    /// </summary>
    public PackedMatrix PackMatrix(Tensor source, Transpose trans = Transpose.No)
    {
        var (k, n) = PackedShape(source, trans, nameof(source));
        var packed = AllocatePackedCore(k, n);
        try
        {
            if ((long)k * n > 0) RepackCore(packed, source, trans);
        }
        catch
        {
            packed.Dispose();
            throw;
        }
        return packed;
    }

    /// <summary>Re-reads B = op(<paramref name="source"/>) into <paramref name="destination"/> (same K×N): after the weights change.</summary>
    public void Repack(PackedMatrix destination, Tensor source, Transpose trans = Transpose.No)
    {
        ArgumentNullException.ThrowIfNull(destination);
        CheckPacked(destination, nameof(destination));
        var (k, n) = PackedShape(source, trans, nameof(source));
        if (k != destination.Rows || n != destination.Columns)
            throw new ArgumentException(
                $"source: op(source) is {k}×{n} (source {source.Shape}, trans {trans}); destination holds a {destination.Rows}×{destination.Columns} matrix", nameof(source));
        if ((long)k * n > 0) RepackCore(destination, source, trans);
    }

    /// <summary>
    /// C = α·A·B + β·C for a packed B [K, N]: A is <paramref name="m"/> rows of K at <paramref name="offsetA"/> with row
    /// stride <paramref name="lda"/>, C is m rows of N at <paramref name="offsetC"/> with row stride <paramref name="ldc"/>.
    /// Validated as <see cref="Gemm(in GemmProblem)"/>; allocation-free.
    /// </summary>
    public void GemmPacked(int m, float alpha, Tensor a, long offsetA, int lda, PackedMatrix b, float beta, Tensor c, long offsetC, int ldc)
    {
        ArgumentNullException.ThrowIfNull(b);
        CheckPacked(b, nameof(b));
        var problem = new GemmProblem
        {
            TransA = Transpose.No, TransB = Transpose.No, M = m, N = b.Columns, K = b.Rows, Alpha = alpha, Beta = beta,
            A = a, OffsetA = offsetA, Lda = lda,
            B = b.Storage, OffsetB = 0, Ldb = Math.Max(1, b.Columns), // the extent of K×N floats, which every layout holds
            C = c, OffsetC = offsetC, Ldc = ldc,
        };
        GemmValidation.Validate(this, problem, "problem", 1, 0, 0, 0);
        GemmPackedCore(problem, b);
    }

    /// <summary>Storage for a K×N packed matrix. The default keeps B row-major, [K, N].</summary>
    protected virtual PackedMatrix AllocatePackedCore(int k, int n) => new(Allocate(DType.F32, new Shape(k, n)), k, n, 0);

    /// <summary>
    /// Writes B = op(source) into <paramref name="destination"/>'s layout (shapes checked, K·N &gt; 0). The default
    /// (row-major storage) copies, or transposes through host memory.
    /// </summary>
    protected virtual void RepackCore(PackedMatrix destination, Tensor source, Transpose trans)
    {
        if (trans == Transpose.No)
        {
            Copy(destination.Storage, source);
            return;
        }
        int k = destination.Rows, n = destination.Columns;
        var stored = source.ToArray(); // [N, K]
        var b = new float[stored.Length];
        for (int j = 0; j < n; j++)
            for (int i = 0; i < k; i++) b[(long)i * n + j] = stored[(long)j * k + i];
        Upload(destination.Storage, b);
    }

    /// <summary>
    /// A validated packed product; <paramref name="problem"/> names the packed storage as B with ldb = N. The default
    /// (row-major storage) is that plain GEMM.
    /// </summary>
    protected virtual void GemmPackedCore(in GemmProblem problem, PackedMatrix b) => GemmCore(problem);

    private (int K, int N) PackedShape(Tensor source, Transpose trans, string name)
    {
        Check.Tensor(this, source, DType.F32, name);
        if (source.Shape.Rank != 2)
            throw new ArgumentException($"{name}: expected a matrix (rank 2) to pack; got {source.Shape}", name);
        int rows = source.Shape[0], cols = source.Shape[1];
        return trans == Transpose.No ? (rows, cols) : (cols, rows);
    }

    private void CheckPacked(PackedMatrix packed, string name)
    {
        if (packed.IsDisposed) throw new ObjectDisposedException(name, $"{name}: {packed} was disposed");
        if (!ReferenceEquals(packed.Backend, this))
            throw new ArgumentException($"{name}: {packed} was packed by backend '{packed.Backend.Name}', not this '{Name}' backend", name);
    }

    /// <summary>One validated GEMM.</summary>
    protected abstract void GemmCore(in GemmProblem problem);

    /// <summary>
    /// <see cref="MatMulAddBias"/>, validated: a whole-tensor product (C contiguous [M, N]) and a bias of N. The default
    /// runs the product, then <see cref="AddBiasCore"/>; a backend with a fused epilogue overrides it.
    /// </summary>
    protected virtual void GemmAddBiasCore(in GemmProblem problem, Tensor bias)
    {
        GemmCore(problem);
        AddBiasCore(problem.C, problem.C, bias);
    }

    /// <summary>A validated strided batch (batchCount ≥ 1).</summary>
    protected abstract void GemmStridedBatchedCore(in GemmProblem problem, long strideA, long strideB, long strideC, int batchCount);

    /// <summary>A validated, non-empty group.</summary>
    protected abstract void GemmGroupedCore(ReadOnlySpan<GemmProblem> problems);
}

namespace LoraRuntime;

/// <summary>Shape, extent and aliasing checks for the GEMM family; messages name the argument and both shapes.</summary>
internal static class GemmValidation
{
    public static void Validate(Backend backend, in GemmProblem p, string arg, int batchCount,
        long strideA, long strideB, long strideC, int index = -1)
    {
        if (p.M < 0 || p.N < 0 || p.K < 0)
            throw new ArgumentOutOfRangeException(arg, $"{At(arg, index)}: M, N and K must be ≥ 0; got M={p.M}, N={p.N}, K={p.K}");
        if (batchCount < 0)
            throw new ArgumentOutOfRangeException(nameof(batchCount), batchCount, "batchCount must be ≥ 0");
        if (strideA < 0 || strideB < 0 || strideC < 0)
            throw new ArgumentOutOfRangeException(arg, $"{At(arg, index)}: strides must be ≥ 0; got strideA={strideA}, strideB={strideB}, strideC={strideC}");
        OperandTensor(backend, p.A, arg, index, "A");
        OperandTensor(backend, p.B, arg, index, "B");
        OperandTensor(backend, p.C, arg, index, "C");
        var (aRows, aCols) = p.StoredA;
        var (bRows, bCols) = p.StoredB;
        long needA = Operand(p.A, arg, index, "A", "op(A)", p.TransA, p.M, p.K, aRows, aCols, p.Lda, p.OffsetA, strideA, batchCount, p);
        long needB = Operand(p.B, arg, index, "B", "op(B)", p.TransB, p.K, p.N, bRows, bCols, p.Ldb, p.OffsetB, strideB, batchCount, p);
        long needC = Operand(p.C, arg, index, "C", "C", Transpose.No, p.M, p.N, p.M, p.N, p.Ldc, p.OffsetC, strideC, batchCount, p);
        if (batchCount > 1 && p.M > 0 && p.N > 0 && strideC < (long)(p.M - 1) * p.Ldc + p.N)
            throw new ArgumentException(
                $"{At(arg, index)}.C: batches of C overlap: strideC={strideC} is less than one {p.M}×{p.N} matrix with ldc={p.Ldc} ({(long)(p.M - 1) * p.Ldc + p.N} elements)", arg);
        // C must not share memory with A or B: every element of C would be read after being overwritten.
        if (needC > 0)
        {
            nint c0 = p.C.Pointer + (nint)(p.OffsetC * 4);
            long cBytes = (needC - p.OffsetC) * 4;
            if (needA > 0 && p.K > 0 && Check.Overlaps(c0, cBytes, p.A.Pointer + (nint)(p.OffsetA * 4), (needA - p.OffsetA) * 4))
                throw new ArgumentException($"{At(arg, index)}.C [{p.M}×{p.N}] must not share memory with {At(arg, index)}.A ({p.A.Shape})", arg);
            if (needB > 0 && p.K > 0 && Check.Overlaps(c0, cBytes, p.B.Pointer + (nint)(p.OffsetB * 4), (needB - p.OffsetB) * 4))
                throw new ArgumentException($"{At(arg, index)}.C [{p.M}×{p.N}] must not share memory with {At(arg, index)}.B ({p.B.Shape})", arg);
        }
    }

    /// <summary>Checks one operand's leading dimension and extent; returns the end (exclusive) of the elements used, 0 if none.</summary>
    private static long Operand(Tensor t, string arg, int index, string part, string what, Transpose trans, int opRows, int opCols,
        int rows, int cols, int ld, long offset, long stride, int batchCount, in GemmProblem p)
    {
        if (ld < Math.Max(1, cols))
        {
            string name = At(arg, index) + "." + part;
            throw new ArgumentException(
                $"{name}: leading dimension must be ≥ {Math.Max(1, cols)} (the stored {rows}×{cols} matrix of {what} = {opRows}×{opCols}, trans {trans}); got {ld}", name);
        }
        if (offset < 0)
            throw new ArgumentOutOfRangeException(At(arg, index) + "." + part, offset, $"{At(arg, index)}.{part}: offset must be ≥ 0");
        if (rows == 0 || cols == 0 || batchCount == 0) return 0;
        long end = offset + (long)(batchCount - 1) * stride + (long)(rows - 1) * ld + cols;
        if (end > t.Length)
        {
            string name = At(arg, index) + "." + part;
            throw new ArgumentException(
                $"{name}: {what} is {opRows}×{opCols} (M={p.M}, N={p.N}, K={p.K}, trans {trans}), stored as {rows} rows of ld={ld} from offset {offset}" +
                (batchCount > 1 ? $" in {batchCount} batches of stride {stride}" : "") +
                $", which needs {end} elements, but tensor {t.Shape} has {t.Length}", name);
        }
        return end;
    }

    private static string At(string arg, int index) => index >= 0 ? $"{arg}[{index}]" : arg;

    /// <summary>The tensor checks of <see cref="Check.Tensor"/>, with the name built only when one fails.</summary>
    private static void OperandTensor(Backend backend, Tensor? t, string arg, int index, string part)
    {
        if (t is null || t.IsDisposed || !ReferenceEquals(t.Backend, backend) || t.DType != DType.F32)
            Check.Tensor(backend, t, DType.F32, At(arg, index) + "." + part);
    }

    /// <summary>No problem's C may share memory with another problem's A, B or C (they run concurrently).</summary>
    public static void NoCrossOverlap(ReadOnlySpan<GemmProblem> problems)
    {
        // Quadratic, but groups are tens of problems and this runs once per call with no allocation.
        for (int i = 0; i < problems.Length; i++)
        {
            var (c0, cBytes) = Extent(problems[i].C, problems[i].OffsetC, problems[i].M, problems[i].N, problems[i].Ldc);
            if (cBytes == 0) continue;
            for (int j = 0; j < problems.Length; j++)
            {
                if (j == i) continue;
                ref readonly var q = ref problems[j];
                var (qc, qcBytes) = Extent(q.C, q.OffsetC, q.M, q.N, q.Ldc);
                var (ra, ca) = q.StoredA;
                var (rb, cb) = q.StoredB;
                var (qa, qaBytes) = q.K == 0 ? (0, 0) : Extent(q.A, q.OffsetA, ra, ca, q.Lda);
                var (qb, qbBytes) = q.K == 0 ? (0, 0) : Extent(q.B, q.OffsetB, rb, cb, q.Ldb);
                if (Check.Overlaps(c0, cBytes, qc, qcBytes) || Check.Overlaps(c0, cBytes, qa, qaBytes) || Check.Overlaps(c0, cBytes, qb, qbBytes))
                    throw new ArgumentException(
                        $"problems[{i}].C [{problems[i].M}×{problems[i].N}] shares memory with an operand of problems[{j}] (M={q.M}, N={q.N}, K={q.K})", "problems");
            }
        }
    }

    private static (nint Start, long Bytes) Extent(Tensor t, long offset, int rows, int cols, int ld) =>
        rows == 0 || cols == 0 ? (0, 0) : (t.Pointer + (nint)(offset * 4), ((long)(rows - 1) * ld + cols) * 4);
}

namespace LoraRuntime.Cpu.Linalg;

/// <summary>
/// The truncated SVD of Halko, Martinsson and Tropp (2011), algorithms 4.4 and 5.1: Y = A·Ω for a Gaussian n×l Ω
/// (l = rank + oversampling, at most min(m, n)); q power iterations Y = A·(Aᵀ·Y), each product re-orthonormalised by
/// QR so that rounding does not wash out the smaller directions; then B = Qᵀ·A (l×n) and its exact SVD,
/// A ≈ (Q·U_B)·S·V_Bᵀ. The passes over A are float32 GEMMs (A stays as given; they are memory-bound), everything
/// l-sized is float64.
/// </summary>
internal static unsafe class RandomizedSvd
{
    public static void Compute(CpuBackend backend, DgemmKernel kernel, Tensor u, Tensor s, Tensor vt, Tensor a, TruncatedSvdOptions options)
    {
        int m = a.Shape[0], n = a.Shape[1], rank = s.Shape[0];
        int l = (int)Math.Min((long)rank + options.Oversampling, Math.Min(m, n));
        using var sketch = backend.Allocate(n, l);  // Ω, then the orthonormal basis of the row space (n×l)
        using var range = backend.Allocate(m, l);   // Y, then its orthonormal basis Q (m×l)
        using var projected = backend.Allocate(l, n); // Qᵀ·A
        long estimate = 2L * (m + n) * l + 4L * l * l + 64L * (m + n);
        using var ctx = new LinalgContext(backend, kernel, Math.Max(m, n), estimate);
        double* qRange = ctx.Arena.Take((long)m * l);
        double* work = ctx.Arena.Take((long)Math.Max(m, n) * l);

        GaussianSketch.Fill(CpuBackend.F(sketch), (long)n * l, options.Seed);
        backend.Gemm(new GemmProblem(range, a, sketch, m, l, n));
        Orthonormalize(ctx, CpuBackend.F(range), m, l, qRange, work);
        for (int it = 0; it < options.PowerIterations; it++)
        {
            // Zᵀ = Qᵀ·A (l×n row-major) is Z = Aᵀ·Q column-major: its QR goes straight into the sketch.
            backend.Gemm(new GemmProblem(projected, range, a, l, n, m, Transpose.Yes));
            Layout.Widen(CpuBackend.F(projected), n, l, work, n);
            OrthonormalizeColumns(ctx, work, n, l, CpuBackend.F(sketch));
            backend.Gemm(new GemmProblem(range, a, sketch, m, l, n));
            Orthonormalize(ctx, CpuBackend.F(range), m, l, qRange, work);
        }
        backend.Gemm(new GemmProblem(projected, range, a, l, n, m, Transpose.Yes));

        // B = Qᵀ·A is l×n; Bᵀ (n×l column-major, its bytes as they lie) = U_B·S·V_Bᵀ, so A ≈ (Q·V_B)·S·U_Bᵀ.
        double* bt = work;
        Layout.Widen(CpuBackend.F(projected), n, l, bt, n);
        double* ub = ctx.Arena.Take((long)n * l), vb = ctx.Arena.Take((long)l * l), sb = ctx.Arena.Take(l);
        DenseSvd.Compute(ctx, n, l, bt, n, sb, ub, n, vb, l);
        double* ua = ctx.Arena.Take((long)m * rank);
        ctx.Gemm.Run(false, false, m, rank, l, 1, qRange, m, vb, l, 0, ua, m);
        Layout.NormalizeSigns(rank, ua, m, m, ub, n, n);
        Layout.Transpose(ua, m, m, rank, CpuBackend.F(u));
        Layout.Narrow(ub, n, n, rank, CpuBackend.F(vt));
        float* sOut = CpuBackend.F(s);
        for (int i = 0; i < rank; i++) sOut[i] = (float)sb[i];
    }

    /// <summary>Replaces the row-major m×l float32 <paramref name="y"/> by an orthonormal basis of its columns, kept in float64 in q.</summary>
    private static void Orthonormalize(LinalgContext ctx, float* y, int m, int l, double* q, double* work)
    {
        Layout.Transpose(y, m, l, work, m);
        OrthonormalizeColumns(ctx, work, m, l, null, q);
        Layout.Transpose(q, m, m, l, y);
    }

    /// <summary>
    /// Q of the column-major m×l <paramref name="a"/> (overwritten), into <paramref name="q"/> (float64, column-major)
    /// when given and into the row-major float32 <paramref name="rowMajor"/> when given.
    /// </summary>
    private static void OrthonormalizeColumns(LinalgContext ctx, double* a, int m, int l, float* rowMajor, double* q = null)
    {
        var mark = ctx.Arena.Mark();
        double* tau = ctx.Arena.Take(l);
        HouseholderQr.Factor(ctx, m, l, a, m, tau);
        if (q == null) q = ctx.Arena.Take((long)m * l);
        HouseholderQr.FormQ(ctx, m, l, l, a, m, tau, q, m);
        if (rowMajor != null) Layout.Transpose(q, m, m, l, rowMajor);
        ctx.Arena.Release(mark);
    }
}

namespace LoraRuntime.Cuda;

// The randomized truncated SVD of the CPU path (Halko, Martinsson and Tropp; see Cpu/Linalg/RandomizedSvd.cs), composed
// of this backend's own GEMM, QR and SVD, with the same seeded Gaussian test matrix.
public sealed unsafe partial class CudaBackend
{
    /// <summary>How <see cref="Backend.TruncatedSvd"/> runs (cuSOLVER's Xgesvdr by default).</summary>
    public CudaTruncatedSvdMethod TruncatedSvdMethod { get; set; } = CudaTruncatedSvdMethod.Cusolver;

    /// <summary>
    /// Y = A·Ω, Q = qr(Y), PowerIterations × (Q = qr(A·qr(Aᵀ·Q))), B = Qᵀ·A = Ub·S·Vt, U = Q·Ub — truncated to the rank,
    /// with U's columns and Vt's rows signed by the convention of <see cref="Backend.Svd"/>. The GEMMs run in float32
    /// whatever <see cref="GemmPrecision"/> says.
    /// </summary>
    private void SketchedTruncatedSvd(Tensor u, Tensor s, Tensor vt, Tensor a, TruncatedSvdOptions options)
    {
        using var gate = Enter();
        int m = a.Shape[0], n = a.Shape[1], rank = s.Shape[0];
        int l = (int)Math.Min((long)rank + options.Oversampling, Math.Min(m, n));
        var precision = GemmPrecision;
        GemmPrecision = CudaGemmPrecision.Fp32;
        try
        {
            var omega = new float[(long)n * l];
            fixed (float* p = omega) Cpu.Linalg.GaussianSketch.Fill(p, omega.Length, options.Seed);
            using var sketch = FromArray(omega, n, l); // Ω, then the orthonormal basis of the row space (n×l)
            using var range = Allocate(m, l);          // Y, then its orthonormal basis Q (m×l)
            using var q = Allocate(m, l);
            using var r = Allocate(l, l);
            using var z = Allocate(n, l);
            using var projected = Allocate(l, n);      // Qᵀ·A
            MatMul(range, a, sketch);
            Qr(q, r, range);
            for (int it = 0; it < options.PowerIterations; it++)
            {
                MatMul(z, a, q, transA: Transpose.Yes);
                Qr(sketch, r, z);
                MatMul(range, a, sketch);
                Qr(q, r, range);
            }
            MatMul(projected, q, a, transA: Transpose.Yes);
            using var ub = Allocate(l, l);
            using var sb = Allocate(l);
            using var vb = Allocate(l, n);
            Svd(ub, sb, vb, projected);
            // U = Q·Ub[:, :rank] straight into u; S and Vt are the leading rows of the small SVD's.
            Gemm(new GemmProblem
            {
                M = m, N = rank, K = l, Alpha = 1, A = q, Lda = l, B = ub, Ldb = l, C = u, Ldc = rank,
            });
            using (var head = sb.View(0, new Shape(rank))) Copy(s, head);
            using (var head = vb.View(0, new Shape(rank, n))) Copy(vt, head);
            NormalizeSigns(u, vt);
        }
        finally
        {
            GemmPrecision = precision;
        }
    }

    /// <summary>Flips columns of u [m, r] with the rows of vt [r, n] so that each column's largest-magnitude entry is positive.</summary>
    private void NormalizeSigns(Tensor u, Tensor vt)
    {
        int m = u.Shape[0], rank = u.Shape[1], n = vt.Shape[1];
        using var uw = Scratch((long)m * rank);
        using var vw = Scratch((long)rank * n);
        using var signs = Scratch(rank);
        Widen(uw.Pointer, u, transpose: false);
        Widen(vw.Pointer, vt, transpose: false);
        nint signsPointer = signs.Pointer, uf = uw.Pointer;
        long uRow = rank, uCol = 1;
        void** signArgs = stackalloc void*[] { &signsPointer, &uf, &m, &uRow, &uCol };
        Interop.CudaDriver.ThrowIfFailed(Interop.CudaDriver.cuLaunchKernel(_device.Function(CudaKernel.ColumnSigns), (uint)rank, 1, 1, BlockSize,
            1, 1, 0, _stream, signArgs, null));
        Narrow(u, uw.Pointer, m, rank, rank, 1, signsPointer, perRow: false);
        Narrow(vt, vw.Pointer, rank, n, n, 1, signsPointer, perRow: true);
    }
}

namespace LoraRuntime.Cpu.Linalg;

/// <summary>
/// The thin SVD of a column-major m×n float64 matrix with m ≥ n, as LAPACK's gesdd arranges it: a tall matrix is
/// first reduced to its n×n R by QR; then bidiagonalisation A = Q·B·Pᵀ (<see cref="Bidiagonalization"/>), the SVD of
/// B = U_B·S·V_Bᵀ, and U = Q·U_B, V = P·V_B applied as block reflectors.
/// </summary>
internal static unsafe class DenseSvd
{
    /// <summary>Rows per column above which QR comes first (LAPACK's gesdd uses about 11/6).</summary>
    public const double QrFirstRatio = 1.6;

    /// <summary>
    /// A (m×n, overwritten) = U·diag(s)·Vᵀ: s descending and nonnegative, U m×n (ldu ≥ m), V n×n (ldv ≥ n).
    /// </summary>
    public static void Compute(LinalgContext ctx, int m, int n, double* a, int lda, double* s, double* u, int ldu, double* v, int ldv)
    {
        if (m < n) throw new InvalidOperationException($"the dense SVD needs m ≥ n; got {m}×{n}");
        if (n == 0) return;
        var mark = ctx.Arena.Mark();
        if (m > n && m >= QrFirstRatio * n)
        {
            double* tau = ctx.Arena.Take(n);
            HouseholderQr.Factor(ctx, m, n, a, lda, tau);
            double* r = ctx.Arena.Take((long)n * n);
            for (int j = 0; j < n; j++)
                for (int i = 0; i < n; i++) r[i + (nint)j * n] = i <= j ? a[i + (nint)j * lda] : 0;
            // U = Q·[U_R; 0]: U_R lands in the top rows of u.
            Compute(ctx, n, n, r, n, s, u, ldu, v, ldv);
            for (int j = 0; j < n; j++) new Span<double>(u + n + (nint)j * ldu, m - n).Clear();
            BlockReflector.ApplyQ(ctx, BlockReflector.Reflectors.Columns(a, lda, m, n, tau), false, n, u, ldu);
            ctx.Arena.Release(mark);
            return;
        }
        double* d = ctx.Arena.Take(n), e = ctx.Arena.Take(n), tauq = ctx.Arena.Take(n), taup = ctx.Arena.Take(n);
        Bidiagonalization.Reduce(ctx, m, n, a, lda, d, e, tauq, taup);
        Layout.Identity(u, m, n, ldu);
        Layout.Identity(v, n, n, ldv);
        BidiagonalSvd.Solve(ctx, n, d, e, u, ldu, v, ldv);
        new ReadOnlySpan<double>(d, n).CopyTo(new Span<double>(s, n));
        // U = Q·U_B and V = P·V_B are independent: one on each of two threads.
        ctx.InParallel(
            c => BlockReflector.ApplyQ(c, BlockReflector.Reflectors.Columns(a, lda, m, n, tauq), false, n, u, ldu),
            c =>
            {
                if (n > 1) BlockReflector.ApplyQ(c, BlockReflector.Reflectors.Rows(a + lda, lda, n - 1, n - 1, taup), false, n, v + 1, ldv);
            },
            BlockReflector.ApplyScratch(n, n));
        ctx.Arena.Release(mark);
    }
}

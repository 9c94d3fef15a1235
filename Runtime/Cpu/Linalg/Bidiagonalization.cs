using System.Runtime.CompilerServices;

namespace LoraRuntime.Cpu.Linalg;

/// <summary>
/// Golub–Kahan bidiagonalisation A = Q·B·Pᵀ of a column-major m×n float64 matrix with m ≥ n (B upper bidiagonal),
/// blocked like LAPACK's gebrd: a panel of <see cref="PanelSize"/> columns and rows is reduced with its updates
/// gathered in X and Y (labrd), then the trailing matrix takes them as two GEMMs, A₂₂ −= V·Yᵀ + X·Uᵀ. The other half
/// of the flops are the two matrix-vector products per column with the trailing matrix (memory-bound; parallel in
/// <see cref="Gemv"/>).
/// On return d (n) and e (n − 1) hold B; reflector i of Q lies below the diagonal of column i (scale tauq[i]) and
/// reflector i of P along row i right of the superdiagonal (scale taup[i], unit at column i + 1).
/// </summary>
internal static unsafe class Bidiagonalization
{
    /// <summary>
    /// Columns per panel: the GEMM's depth in the trailing update. Each column of a panel also reads the panel's
    /// first columns (of A, X and Y) about ten times, so narrower panels save those passes and deeper ones make the
    /// GEMM more efficient (measured, two threads: 24 beat 32 by 7% at 512 and 2% at 1024; 16 and 24 tie).
    /// </summary>
    public const int PanelSize = 24;

    public static void Reduce(LinalgContext ctx, int m, int n, double* a, int lda, double* d, double* e, double* tauq, double* taup)
    {
        if (m < n) throw new InvalidOperationException($"bidiagonalisation needs m ≥ n; got {m}×{n}");
        if (n == 0) return;
        var mark = ctx.Arena.Mark();
        int nb = Math.Min(PanelSize, n);
        double* x = ctx.Arena.Take((long)m * nb);
        double* y = ctx.Arena.Take((long)n * nb);
        for (int p = 0; p < n; p += nb)
        {
            int b = Math.Min(nb, n - p);
            int mp = m - p, np = n - p;
            double* ap = a + p + (nint)p * lda;
            ReducePanel(ctx, mp, np, b, ap, lda, d + p, e + p, tauq + p, taup + p, x, mp, y, np);
            if (b == np) break;
            // A₂₂ −= V·Yᵀ + X·Uᵀ, with the panel's unit elements in place (labrd left them as 1).
            double* a22 = ap + b + (nint)b * lda;
            ctx.Gemm.Run(false, true, mp - b, np - b, b, -1, ap + b, lda, y + b, np, 1, a22, lda);
            ctx.Gemm.Run(false, false, mp - b, np - b, b, -1, x + b, mp, ap + (nint)b * lda, lda, 1, a22, lda);
            for (int j = 0; j < b; j++)
            {
                ap[j + (nint)j * lda] = d[p + j];
                ap[j + (nint)(j + 1) * lda] = e[p + j];
            }
        }
        ctx.Arena.Release(mark);
    }

    /// <summary>
    /// Reduces the first b rows and columns of the m×n matrix A (labrd): X (m×b, ldx) and Y (n×b, ldy) receive the
    /// updates the rest of A still owes, A₂₂ − V·Yᵀ − X·Uᵀ. When b = n the whole matrix is reduced and the last
    /// column gets no row reflector. On return A[i, i] and A[i, i + 1] hold 1 (the vectors' unit elements) for the
    /// trailing GEMMs, except when the panel is the whole rest of the matrix, where they hold d and e.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ReducePanel(LinalgContext ctx, int m, int n, int b, double* a, int lda, double* d, double* e,
        double* tauq, double* taup, double* x, int ldx, double* y, int ldy)
    {
        var gemv = ctx.Gemv;
        var mark = ctx.Arena.Mark();
        double* row = ctx.Arena.Take(n);
        for (int i = 0; i < b; i++)
        {
            double* aii = a + i + (nint)i * lda;
            // A[i:m, i] −= A[i:m, 0:i]·Y[i, 0:i]ᵀ + X[i:m, 0:i]·A[0:i, i]
            gemv.Run(false, m - i, i, -1, a + i, lda, y + i, ldy, 1, aii, 1);
            gemv.Run(false, m - i, i, -1, x + i, ldx, a + (nint)i * lda, 1, 1, aii, 1);
            tauq[i] = Householder.Generate(m - i, ref aii[0], aii + 1, 1);
            d[i] = aii[0];
            if (i == n - 1)
            {
                taup[i] = 0;
                continue;
            }
            aii[0] = 1;
            // Y[i+1:n, i] = τq·(A[i:m, i+1:n]ᵀ·v − Y[i+1:n, 0:i]·(A[i:m, 0:i]ᵀ·v) − A[0:i, i+1:n]ᵀ·(X[i:m, 0:i]ᵀ·v))
            double* yi = y + (nint)i * ldy;
            double* ai1 = aii + lda;                       // A[i, i+1]
            gemv.Run(true, m - i, n - i - 1, 1, ai1, lda, aii, 1, 0, yi + i + 1, 1);
            gemv.Run(true, m - i, i, 1, a + i, lda, aii, 1, 0, yi, 1);
            gemv.Run(false, n - i - 1, i, -1, y + i + 1, ldy, yi, 1, 1, yi + i + 1, 1);
            gemv.Run(true, m - i, i, 1, x + i, ldx, aii, 1, 0, yi, 1);
            gemv.Run(true, i, n - i - 1, -1, a + (nint)(i + 1) * lda, lda, yi, 1, 1, yi + i + 1, 1);
            Scale(yi + i + 1, n - i - 1, tauq[i]);
            // A[i, i+1:n] −= Y[i+1:n, 0:i+1]·A[i, 0:i+1]ᵀ + A[0:i, i+1:n]ᵀ·X[i, 0:i]ᵀ, worked on as a contiguous copy of
            // the row (one strided gather and one scatter instead of a strided pass per use).
            int nr = n - i - 1;
            for (int j = 0; j < nr; j++) row[j] = ai1[(nint)j * lda];
            gemv.Run(false, nr, i + 1, -1, y + i + 1, ldy, a + i, lda, 1, row, 1);
            gemv.Run(true, i, nr, -1, a + (nint)(i + 1) * lda, lda, x + i, ldx, 1, row, 1);
            taup[i] = Householder.Generate(nr, ref row[0], row + 1, 1);
            e[i] = row[0];
            row[0] = 1;
            for (int j = 0; j < nr; j++) ai1[(nint)j * lda] = row[j];
            double* xi = x + (nint)i * ldx;
            gemv.Run(false, m - i - 1, nr, 1, ai1 + 1, lda, row, 1, 0, xi + i + 1, 1);
            gemv.Run(true, nr, i + 1, 1, y + i + 1, ldy, row, 1, 0, xi, 1);
            gemv.Run(false, m - i - 1, i + 1, -1, a + i + 1, lda, xi, 1, 1, xi + i + 1, 1);
            gemv.Run(false, i, nr, 1, a + (nint)(i + 1) * lda, lda, row, 1, 0, xi, 1);
            gemv.Run(false, m - i - 1, i, -1, x + i + 1, ldx, xi, 1, 1, xi + i + 1, 1);
            Scale(xi + i + 1, m - i - 1, taup[i]);
        }
        ctx.Arena.Release(mark);
        if (b == n)
            for (int j = 0; j < b; j++)
            {
                a[j + (nint)j * lda] = d[j];
                if (j + 1 < n) a[j + (nint)(j + 1) * lda] = e[j];
            }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scale(double* v, int n, double factor)
    {
        for (int i = 0; i < n; i++) v[i] *= factor;
    }
}

using System.Runtime.CompilerServices;

namespace LoraRuntime.Cpu.Linalg;

/// <summary>
/// Householder QR of a column-major m×n float64 matrix, blocked like LAPACK's geqrf: each panel of
/// <see cref="BlockReflector.BlockSize"/> columns is factored column by column, then its reflectors are applied to the
/// rest of the matrix as one block reflector, so most of the flops are GEMM.
/// </summary>
internal static unsafe class HouseholderQr
{
    /// <summary>
    /// A = Q·R: R overwrites the upper triangle, reflector i is stored below the diagonal of column i with scale
    /// tau[i], for i &lt; min(m, n).
    /// </summary>
    public static void Factor(LinalgContext ctx, int m, int n, double* a, int lda, double* tau)
    {
        int k = Math.Min(m, n);
        for (int j = 0; j < k; j += BlockReflector.BlockSize)
        {
            int b = Math.Min(BlockReflector.BlockSize, k - j);
            double* panel = a + j + (nint)j * lda;
            FactorPanel(ctx, m - j, b, panel, lda, tau + j);
            if (j + b >= n) continue;
            var mark = ctx.Arena.Mark();
            var reflectors = BlockReflector.Reflectors.Columns(panel, lda, m - j, b, tau + j);
            double* v = BlockReflector.CopyPanel(ctx, reflectors, 0, b);
            double* t = BlockReflector.FormT(ctx, v, m - j, b, tau + j);
            BlockReflector.Apply(ctx, v, t, m - j, b, true, n - j - b, panel + (nint)b * lda, lda);
            ctx.Arena.Release(mark);
        }
    }

    /// <summary>Unblocked QR of an m×b panel (geqr2): one reflector per column, applied to the columns to its right.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FactorPanel(LinalgContext ctx, int m, int b, double* a, int lda, double* tau)
    {
        var mark = ctx.Arena.Mark();
        double* work = ctx.Arena.Take(b);
        for (int i = 0; i < b && i < m; i++)
        {
            double* column = a + i + (nint)i * lda;
            tau[i] = Householder.Generate(m - i, ref column[0], column + 1, 1);
            if (i + 1 == b) continue;
            double diagonal = column[0];
            column[0] = 1;
            Householder.ApplyLeft(ctx, tau[i], column, m - i, b - i - 1, column + lda, lda, work);
            column[0] = diagonal;
        }
        ctx.Arena.Release(mark);
    }

    /// <summary>
    /// The first <paramref name="columns"/> columns of Q (m × columns, column-major, into <paramref name="q"/>) from the
    /// k reflectors that <see cref="Factor"/> left in a (columns ≥ k).
    /// </summary>
    public static void FormQ(LinalgContext ctx, int m, int k, int columns, double* a, int lda, double* tau, double* q, int ldq)
    {
        for (int j = 0; j < columns; j++)
        {
            var col = new Span<double>(q + (nint)j * ldq, m);
            col.Clear();
            if (j < m) col[j] = 1;
        }
        var reflectors = BlockReflector.Reflectors.Columns(a, lda, m, k, tau);
        BlockReflector.ApplyQ(ctx, reflectors, false, columns, q, ldq, identityStart: true);
    }
}

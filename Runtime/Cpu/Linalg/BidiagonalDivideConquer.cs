using System.Runtime.CompilerServices;

namespace LoraRuntime.Cpu.Linalg;

/// <summary>
/// The SVD of an upper bidiagonal matrix by divide and conquer (Gu and Eisenstat's; LAPACK's bdsdc): split at the
/// middle row, solve the halves (each n × n + 1 or square), merge with <see cref="BidiagonalMerge"/>; blocks of at
/// most <see cref="LeafSize"/> rows are solved by <see cref="BidiagonalQr"/>. Most of the work is the merges' GEMMs.
/// </summary>
internal static unsafe class BidiagonalDivideConquer
{
    /// <summary>Blocks this small are solved by QR iteration (LAPACK's smlsiz).</summary>
    public const int LeafSize = 25;

    /// <summary>Above this size the two halves of the top split are solved side by side.</summary>
    private const int ParallelHalves = 200;

    /// <summary>The scratch doubles a merge of ns rows takes (the small vector matrices and their products).</summary>
    public static long MergeScratch(long ns) => 5 * (ns + 1) * (ns + 1) + 32 * ns;

    /// <summary>
    /// B = U·diag(d)·Vᵀ for the n×n upper bidiagonal (d, e) (overwritten): U and V (n×n, ldu, ldv) receive B's singular
    /// vectors and d the singular values, nonnegative and descending.
    /// </summary>
    public static void Solve(LinalgContext ctx, int n, double* d, double* e, double* u, int ldu, double* v, int ldv)
    {
        if (n == 0) return;
        // Scale to a largest entry of 1 (a power of two, so exactly): the tolerances are then absolute.
        double max = 0;
        for (int i = 0; i < n; i++) max = Math.Max(max, Math.Abs(d[i]));
        for (int i = 0; i < n - 1; i++) max = Math.Max(max, Math.Abs(e[i]));
        if (max == 0)
        {
            Layout.Identity(u, n, n, ldu);
            Layout.Identity(v, n, n, ldv);
            return;
        }
        double scale = Math.ScaleB(1, -Math.ILogB(max));
        for (int i = 0; i < n; i++) d[i] *= scale;
        for (int i = 0; i < n - 1; i++) e[i] *= scale;
        if (n > ParallelHalves)
        {
            // The halves are independent: one on each of two threads, then the top merge with parallel GEMMs.
            int nl = n / 2;
            double alpha = d[nl], beta = e[nl];
            ctx.InParallel(
                c => Solve(c, d, e, u, ldu, v, ldv, 0, nl, 1),
                c => Solve(c, d, e, u, ldu, v, ldv, nl + 1, n - nl - 1, 0),
                MergeScratch(n - nl));
            BidiagonalMerge.Merge(ctx, d, u, ldu, v, ldv, 0, n, nl, 0, alpha, beta);
        }
        else Solve(ctx, d, e, u, ldu, v, ldv, 0, n, 0);
        for (int i = 0; i < n; i++) d[i] /= scale;
        SortDescending(ctx, n, d, u, ldu, v, ldv);
    }

    /// <summary>The block of ns rows (and ns + sqre columns) at r0.</summary>
    private static void Solve(LinalgContext ctx, double* d, double* e, double* u, int ldu, double* v, int ldv, int r0, int ns, int sqre)
    {
        if (ns <= LeafSize)
        {
            Leaf(ctx, d + r0, e + r0, u + r0 + (nint)r0 * ldu, ldu, v + r0 + (nint)r0 * ldv, ldv, ns, sqre);
            return;
        }
        int nl = ns / 2;
        double alpha = d[r0 + nl], beta = e[r0 + nl];
        Solve(ctx, d, e, u, ldu, v, ldv, r0, nl, 1);
        Solve(ctx, d, e, u, ldu, v, ldv, r0 + nl + 1, ns - nl - 1, sqre);
        BidiagonalMerge.Merge(ctx, d, u, ldu, v, ldv, r0, ns, nl, sqre, alpha, beta);
    }

    /// <summary>
    /// A small block by QR iteration. With sqre the extra column's entry is first chased up and out by rotations from
    /// the right (V's columns i and ns), leaving a square bidiagonal and V's last column the null vector.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Leaf(LinalgContext ctx, double* d, double* e, double* u, int ldu, double* v, int ldv, int ns, int sqre)
    {
        Layout.Identity(u, ns, ns, ldu);
        Layout.Identity(v, ns + sqre, ns + sqre, ldv);
        var mark = ctx.Arena.Mark();
        double* ee = ctx.Arena.Take(ns);
        new ReadOnlySpan<double>(e, ns - 1 + sqre).CopyTo(new Span<double>(ee, ns - 1 + sqre));
        if (sqre == 1)
        {
            double bulge = ee[ns - 1];
            for (int i = ns - 1; i >= 0; i--)
            {
                d[i] = PlaneRotations.Generate(d[i], bulge, out double c, out double s);
                if (i > 0)
                {
                    bulge = -s * ee[i - 1];
                    ee[i - 1] = c * ee[i - 1];
                }
                PlaneRotations.Rotate(v + (nint)i * ldv, v + (nint)ns * ldv, ns + 1, c, s);
            }
        }
        BidiagonalQr.Solve(ns, d, ee, u, ns, ldu, v, ns + sqre, ldv, ctx.Arena.Take(4L * ns));
        ctx.Arena.Release(mark);
    }

    /// <summary>Sorts d descending, moving the columns of U and V with it.</summary>
    private static void SortDescending(LinalgContext ctx, int n, double* d, double* u, int ldu, double* v, int ldv)
    {
        var mark = ctx.Arena.Mark();
        int* order = ctx.Arena.TakeInts(n);
        double* keys = ctx.Arena.Take(n), copy = ctx.Arena.Take((long)n * n);
        for (int i = 0; i < n; i++)
        {
            order[i] = i;
            keys[i] = -d[i];
        }
        new Span<double>(keys, n).Sort(new Span<int>(order, n));
        for (int i = 0; i < n; i++) d[i] = -keys[i];
        Permute(u, ldu, n, order, copy);
        Permute(v, ldv, n, order, copy);
        ctx.Arena.Release(mark);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Permute(double* a, int lda, int n, int* order, double* copy)
    {
        for (int j = 0; j < n; j++)
            new ReadOnlySpan<double>(a + (nint)order[j] * lda, n).CopyTo(new Span<double>(copy + (nint)j * n, n));
        for (int j = 0; j < n; j++)
            new ReadOnlySpan<double>(copy + (nint)j * n, n).CopyTo(new Span<double>(a + (nint)j * lda, n));
    }
}

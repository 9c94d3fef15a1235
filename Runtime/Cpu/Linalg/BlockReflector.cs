using System.Runtime.CompilerServices;

namespace LoraRuntime.Cpu.Linalg;

/// <summary>
/// Products of reflectors applied as block reflectors (compact WY): H_j·…·H_{j+b−1} = I − V·T·Vᵀ with V the b
/// vectors (unit lower trapezoidal) and T b×b upper triangular, so that applying b reflectors is three GEMMs.
/// Vectors are read through <see cref="Reflectors"/>, which covers both LAPACK storages: down the columns below the
/// diagonal (QR, the left side of the bidiagonalisation) and along the rows right of it (its right side).
/// </summary>
internal static unsafe class BlockReflector
{
    /// <summary>Reflectors per block.</summary>
    public const int BlockSize = 32;

    /// <summary>
    /// Reflectors per block when applying them to another matrix: fewer passes over it and a deeper GEMM than 32, and
    /// W = Vᵀ·C fills whole 24-row panels of the AVX-512 kernel (measured on Q·C at 1024²: 32 → 21, 48 → 26,
    /// 64 → 23, 96 → 23 GFLOP/s single-threaded).
    /// </summary>
    public const int ApplyBlockSize = 48;

    /// <summary>
    /// k reflectors of length <see cref="Length"/>: reflector i is 1 at element i and <c>At(r, i)</c> below it
    /// (r &gt; i), zero above; its scale is Tau[i].
    /// </summary>
    public readonly struct Reflectors(double* vectors, nint rowStride, nint colStride, int length, int count, double* tau)
    {
        public int Length { get; } = length;
        public int Count { get; } = count;
        public double* Tau { get; } = tau;
        public double At(int row, int reflector) => vectors[row * rowStride + reflector * colStride];

        /// <summary>Vectors stored down the columns of a column-major matrix (QR's storage).</summary>
        public static Reflectors Columns(double* a, int lda, int length, int count, double* tau) => new(a, 1, lda, length, count, tau);

        /// <summary>Vectors stored along the rows: reflector i in row i, starting at column i (the bidiagonalisation's P).</summary>
        public static Reflectors Rows(double* a, int lda, int length, int count, double* tau) => new(a, lda, 1, length, count, tau);
    }

    /// <summary>The scratch doubles <see cref="ApplyQ"/> takes for reflectors of length up to <paramref name="rows"/> and a C of n columns.</summary>
    public static long ApplyScratch(long rows, long n) => (rows + 2 * n + 2L * ApplyBlockSize) * ApplyBlockSize + 64;

    /// <summary>
    /// C (q.Length × n) ← Q·C, or Qᵀ·C when <paramref name="transpose"/>, for Q = H_0·H_1·…·H_{k−1}. With
    /// <paramref name="identityStart"/> C is known to start as the first columns of the identity, so the block at j
    /// touches only columns j.. (what LAPACK's orgqr saves).
    /// </summary>
    public static void ApplyQ(LinalgContext ctx, Reflectors q, bool transpose, int n, double* c, int ldc, bool identityStart = false)
    {
        int k = q.Count;
        if (k == 0 || n == 0) return;
        int nb = ApplyBlockSize;
        int blocks = (k + nb - 1) / nb;
        for (int t = 0; t < blocks; t++)
        {
            // Q·C applies the last block first; Qᵀ·C the first block first.
            int block = transpose ? t : blocks - 1 - t;
            int j = block * nb, b = Math.Min(nb, k - j);
            int col0 = identityStart ? j : 0;
            if (col0 >= n) continue;
            var mark = ctx.Arena.Mark();
            int rows = q.Length - j;
            double* v = CopyPanel(ctx, q, j, b);
            double* tMatrix = FormT(ctx, v, rows, b, q.Tau + j);
            Apply(ctx, v, tMatrix, rows, b, transpose, n - col0, c + j + (nint)col0 * ldc, ldc);
            ctx.Arena.Release(mark);
        }
    }

    /// <summary>Reflectors j..j+b−1 as a clean column-major panel of (Length − j) × b: explicit ones and zeros.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double* CopyPanel(LinalgContext ctx, Reflectors q, int j, int b)
    {
        int rows = q.Length - j;
        double* v = ctx.Arena.Take((long)rows * b);
        for (int col = 0; col < b; col++)
        {
            int i = j + col;
            double* vc = v + (nint)col * rows;
            for (int r = 0; r < col; r++) vc[r] = 0;
            vc[col] = 1;
            for (int r = col + 1; r < rows; r++) vc[r] = q.At(j + r, i);
        }
        return v;
    }

    /// <summary>
    /// The b×b upper triangular T (column-major, from the arena) of H_0·…·H_{b−1} = I − V·T·Vᵀ for the clean panel V
    /// (rows × b): T[i, i] = τ_i and T[0..i, i] = −τ_i·T[0..i, 0..i]·(V[:, 0..i]ᵀ·v_i), with the Gram matrix VᵀV from
    /// one GEMM.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double* FormT(LinalgContext ctx, double* v, int rows, int b, double* tau)
    {
        double* t = ctx.Arena.Zeroed((long)b * b);
        double* gram = ctx.Arena.Take((long)b * b);
        ctx.Gemm.Run(true, false, b, b, rows, 1, v, rows, v, rows, 0, gram, b);
        for (int i = 0; i < b; i++)
        {
            double* ti = t + (nint)i * b;
            ti[i] = tau[i];
            if (tau[i] == 0) continue;
            // T[0..i, i] = −τ_i · T[0..i, 0..i] · gram[0..i, i]  (T upper triangular: row r uses columns r..i−1).
            double* g = gram + (nint)i * b;
            for (int r = 0; r < i; r++)
            {
                double sum = 0;
                for (int col = r; col < i; col++) sum += t[r + (nint)col * b] * g[col];
                ti[r] = -tau[i] * sum;
            }
        }
        return t;
    }

    /// <summary>
    /// C (rows × n) ← (I − V·op(T)·Vᵀ)·C, op(T) = Tᵀ when <paramref name="transposeT"/> (that is, the transpose of the
    /// block reflector): W = VᵀC, W = op(T)·W, C −= V·W — three GEMMs (T is stored dense, its lower triangle zero, so
    /// the small triangular product runs in the GEMM kernel too rather than in scalar loops).
    /// </summary>
    public static void Apply(LinalgContext ctx, double* v, double* t, int rows, int b, bool transposeT, int n, double* c, int ldc)
    {
        var mark = ctx.Arena.Mark();
        double* w = ctx.Arena.Take((long)b * n), tw = ctx.Arena.Take((long)b * n);
        ctx.Gemm.Run(true, false, b, n, rows, 1, v, rows, c, ldc, 0, w, b);
        ctx.Gemm.Run(transposeT, false, b, n, b, 1, t, b, w, b, 0, tw, b);
        ctx.Gemm.Run(false, false, rows, n, b, -1, v, rows, tw, b, 1, c, ldc);
        ctx.Arena.Release(mark);
    }
}

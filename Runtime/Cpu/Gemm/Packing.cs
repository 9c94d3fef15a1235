using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace LoraRuntime.Cpu.Gemm;

/// <summary>
/// Copies blocks of op(A) and op(B) into the panel layouts the micro-kernels stream: A in panels of MR rows
/// (MR consecutive floats per depth step), B in panels of NR columns (NR consecutive floats per depth step).
/// The last panel is zero-padded, so kernels always run full tiles. Transposition happens here, once.
/// </summary>
internal static unsafe class Packing
{
    /// <summary>
    /// Packs <paramref name="rows"/> rows × <paramref name="kc"/> depth of op(A), starting at <paramref name="a"/>
    /// (= &amp;op(A)[row0, k0]), into ⌈rows/mr⌉ panels of mr·kc floats.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackA(float* a, nint lda, bool trans, int rows, int kc, int mr, float* dst)
    {
        for (int r0 = 0; r0 < rows; r0 += mr, dst += (nint)mr * kc)
        {
            int h = Math.Min(mr, rows - r0);
            if (trans)
            {
                // op(A)[i, k] = a[k·lda + i]: each depth step is h contiguous floats.
                float* src = a + r0;
                for (int k = 0; k < kc; k++, src += lda)
                {
                    float* d = dst + (nint)k * mr;
                    // Whole vectors, not a float at a time: every TN product (a weight gradient dyᵀ·x) packs its
                    // whole A this way.
                    Primitives.ShortCopy.Floats(src, d, h);
                    for (int i = h; i < mr; i++) d[i] = 0f;
                }
            }
            else
            {
                // op(A)[i, k] = a[i·lda + k]: read each row contiguously, write with stride mr; whole 8×8 and 4×4
                // blocks of a full panel are transposed in registers, the rest one float at a time.
                int done = h == mr && mr % 4 == 0 && RegisterTranspose.IsAccelerated ? kc / 8 * 8 : 0;
                for (int k = 0; k < done; k += 8)
                {
                    int i = 0;
                    for (; i + 8 <= mr; i += 8) RegisterTranspose.Block8x8(a + (nint)(r0 + i) * lda + k, lda, dst + (nint)k * mr + i, mr);
                    for (; i < mr; i += 4)
                    {
                        RegisterTranspose.Block4x4(a + (nint)(r0 + i) * lda + k, lda, dst + (nint)k * mr + i, mr);
                        RegisterTranspose.Block4x4(a + (nint)(r0 + i) * lda + k + 4, lda, dst + (nint)(k + 4) * mr + i, mr);
                    }
                }
                for (int i = 0; i < h; i++)
                {
                    float* src = a + (nint)(r0 + i) * lda;
                    float* d = dst + i;
                    int k = done;
                    for (; k + 4 <= kc; k += 4)
                    {
                        d[(nint)k * mr] = src[k];
                        d[(nint)(k + 1) * mr] = src[k + 1];
                        d[(nint)(k + 2) * mr] = src[k + 2];
                        d[(nint)(k + 3) * mr] = src[k + 3];
                    }
                    for (; k < kc; k++) d[(nint)k * mr] = src[k];
                }
                for (int i = h; i < mr; i++)
                    for (int k = 0; k < kc; k++) dst[(nint)k * mr + i] = 0f;
            }
        }
    }

    /// <summary>
    /// Packs <paramref name="kc"/> depth × <paramref name="cols"/> columns of op(B), starting at <paramref name="b"/>
    /// (= &amp;op(B)[k0, col0]), into ⌈cols/nr⌉ panels of kc·nr floats.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackB(float* b, nint ldb, bool trans, int cols, int kc, int nr, float* dst)
    {
        for (int c0 = 0; c0 < cols; c0 += nr, dst += (nint)nr * kc)
        {
            int w = Math.Min(nr, cols - c0);
            if (!trans)
            {
                // op(B)[k, j] = b[k·ldb + j]: each depth step is w contiguous floats.
                float* src = b + c0;
                if (w == nr)
                {
                    for (int k = 0; k < kc; k++, src += ldb) CopyRow(src, dst + (nint)k * nr, nr);
                }
                else
                {
                    for (int k = 0; k < kc; k++, src += ldb)
                    {
                        float* d = dst + (nint)k * nr;
                        for (int j = 0; j < w; j++) d[j] = src[j];
                        for (int j = w; j < nr; j++) d[j] = 0f;
                    }
                }
            }
            else
            {
                // op(B)[k, j] = b[j·ldb + k]: read each stored row contiguously, write with stride nr; whole 8×8
                // blocks of a full panel are transposed in registers, the rest one float at a time.
                int done = w == nr && nr % 8 == 0 && RegisterTranspose.IsAccelerated ? kc / 8 * 8 : 0;
                for (int k = 0; k < done; k += 8)
                    for (int j = 0; j < nr; j += 8)
                        RegisterTranspose.Block8x8(b + (nint)(c0 + j) * ldb + k, ldb, dst + (nint)k * nr + j, nr);
                for (int j = 0; j < w; j++)
                {
                    float* src = b + (nint)(c0 + j) * ldb;
                    float* d = dst + j;
                    for (int k = done; k < kc; k++) d[(nint)k * nr] = src[k];
                }
                for (int j = w; j < nr; j++)
                    for (int k = 0; k < kc; k++) dst[(nint)k * nr + j] = 0f;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyRow(float* src, float* dst, int n)
    {
        if (Vector512.IsHardwareAccelerated && n == 32)
        {
            Vector512.Store(Vector512.Load(src), dst);
            Vector512.Store(Vector512.Load(src + 16), dst + 16);
        }
        else if (Vector256.IsHardwareAccelerated && n == 16)
        {
            Vector256.Store(Vector256.Load(src), dst);
            Vector256.Store(Vector256.Load(src + 8), dst + 8);
        }
        else
        {
            for (int j = 0; j < n; j++) dst[j] = src[j];
        }
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace LoraRuntime.Cpu.Gemm;

/// <summary>
/// The inner-product form for narrow outputs (LoRA's shrink, x·Aᵀ with R = 4…32 columns): C[i, j] is the dot
/// product of A's row i with row j of Bᵀ, both contiguous in K, so A is streamed once as stored and never packed.
/// Runs with the AVX-512 kernel only. Bᵀ is packed once per call, zero-padded to a multiple of <see cref="Cols"/> rows of stride <c>ldbt</c>.
/// </summary>
internal static unsafe class DotKernels
{
    /// <summary>Bᵀ rows per tile.</summary>
    public const int Cols = 8;

    /// <summary>Depth padding of packed Bᵀ rows.</summary>
    public const int DepthAlign = 16;

    /// <summary>
    /// C[rows × w] = α·A[rows × K]·Bᵀ[w × K]ᵀ + β·C for rows ∈ {1, 2}, w ≤ <see cref="Cols"/>;
    /// <paramref name="bt"/> holds <see cref="Cols"/> rows of stride <paramref name="ldbt"/> (zero past w).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Tile(int rows, int w, int k, float* a, nint lda, float* bt, nint ldbt,
        float* c, nint ldc, float alpha, float beta)
    {
        float* a1 = rows == 2 ? a + lda : a; // a single row is computed twice rather than branch in the loop
        Vector512<float> s00 = default, s01 = default, s02 = default, s03 = default, s04 = default, s05 = default, s06 = default, s07 = default;
        Vector512<float> s10 = default, s11 = default, s12 = default, s13 = default, s14 = default, s15 = default, s16 = default, s17 = default;
        int k16 = k & ~15;
        for (int p = 0; p < k16; p += 16)
        {
            var x0 = Vector512.Load(a + p);
            var x1 = Vector512.Load(a1 + p);
            float* b = bt + p;
            var b0 = Vector512.Load(b); s00 = Vector512.FusedMultiplyAdd(x0, b0, s00); s10 = Vector512.FusedMultiplyAdd(x1, b0, s10); b += ldbt;
            var b1 = Vector512.Load(b); s01 = Vector512.FusedMultiplyAdd(x0, b1, s01); s11 = Vector512.FusedMultiplyAdd(x1, b1, s11); b += ldbt;
            var b2 = Vector512.Load(b); s02 = Vector512.FusedMultiplyAdd(x0, b2, s02); s12 = Vector512.FusedMultiplyAdd(x1, b2, s12); b += ldbt;
            var b3 = Vector512.Load(b); s03 = Vector512.FusedMultiplyAdd(x0, b3, s03); s13 = Vector512.FusedMultiplyAdd(x1, b3, s13); b += ldbt;
            var b4 = Vector512.Load(b); s04 = Vector512.FusedMultiplyAdd(x0, b4, s04); s14 = Vector512.FusedMultiplyAdd(x1, b4, s14); b += ldbt;
            var b5 = Vector512.Load(b); s05 = Vector512.FusedMultiplyAdd(x0, b5, s05); s15 = Vector512.FusedMultiplyAdd(x1, b5, s15); b += ldbt;
            var b6 = Vector512.Load(b); s06 = Vector512.FusedMultiplyAdd(x0, b6, s06); s16 = Vector512.FusedMultiplyAdd(x1, b6, s16); b += ldbt;
            var b7 = Vector512.Load(b); s07 = Vector512.FusedMultiplyAdd(x0, b7, s07); s17 = Vector512.FusedMultiplyAdd(x1, b7, s17);
        }
        float* sums = stackalloc float[2 * Cols];
        sums[0] = Vector512.Sum(s00); sums[1] = Vector512.Sum(s01); sums[2] = Vector512.Sum(s02); sums[3] = Vector512.Sum(s03);
        sums[4] = Vector512.Sum(s04); sums[5] = Vector512.Sum(s05); sums[6] = Vector512.Sum(s06); sums[7] = Vector512.Sum(s07);
        sums[8] = Vector512.Sum(s10); sums[9] = Vector512.Sum(s11); sums[10] = Vector512.Sum(s12); sums[11] = Vector512.Sum(s13);
        sums[12] = Vector512.Sum(s14); sums[13] = Vector512.Sum(s15); sums[14] = Vector512.Sum(s16); sums[15] = Vector512.Sum(s17);
        for (int p = k16; p < k; p++)
            for (int j = 0; j < w; j++)
            {
                float bv = bt[j * ldbt + p];
                sums[j] += a[p] * bv;
                sums[Cols + j] += a1[p] * bv;
            }
        for (int i = 0; i < rows; i++)
        {
            float* ci = c + i * ldc;
            for (int j = 0; j < w; j++)
                ci[j] = beta == 0f ? alpha * sums[i * Cols + j] : alpha * sums[i * Cols + j] + beta * ci[j];
        }
    }

    /// <summary>
    /// Packs Bᵀ rows [j0, j0 + count) (count ≤ <see cref="Cols"/>·groups) for depth K into rows of stride
    /// <paramref name="ldbt"/>, zero-padding the depth to ldbt and missing rows entirely.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackTransposed(float* b, nint ldb, bool transB, int j0, int count, int k, float* dst, nint ldbt)
    {
        for (int j = 0; j < count; j++)
        {
            float* d = dst + j * ldbt;
            if (transB)
            {
                // Stored N×K: row j of Bᵀ is a row of B.
                new ReadOnlySpan<float>(b + (j0 + j) * ldb, k).CopyTo(new Span<float>(d, k));
            }
            else
            {
                // Stored K×N: row j of Bᵀ is column j0 + j of B.
                float* s = b + j0 + j;
                for (int p = 0; p < k; p++) d[p] = s[p * ldb];
            }
            new Span<float>(d + k, (int)(ldbt - k)).Clear();
        }
    }
}

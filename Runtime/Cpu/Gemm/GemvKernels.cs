using System.Runtime.CompilerServices;
using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace LoraRuntime.Cpu.Gemm;

/// <summary>
/// Matrix-vector kernels for M = 1 or N = 1 (decoding one token), where packing would cost more than it saves
/// and the time is the matrix streaming in from memory once.
/// </summary>
internal static unsafe class GemvKernels
{
    /// <summary>
    /// acc[0..w) = Σ_k x[k·incX]·mat[k·ldm + 0..w). Each row segment is read once, contiguously, four rows per pass,
    /// with the sums in L1 (w ≤ 4096): memory-bound as it should be, with the prefetcher streaming whole rows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Columns(float* mat, nint ldm, float* x, nint incX, int depth, float* acc, int w)
    {
        var sums = new Span<float>(acc, w);
        sums.Clear();
        int k = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; k + 8 <= depth; k += 8)
                Rows8(mat + k * ldm, ldm, x + k * incX, incX, acc, w);
        }
        for (; k + 4 <= depth; k += 4)
        {
            float* r = mat + k * ldm;
            Rows4(r, r + ldm, r + 2 * ldm, r + 3 * ldm, x[k * incX], x[(k + 1) * incX], x[(k + 2) * incX], x[(k + 3) * incX], acc, w);
        }
        for (; k < depth; k++)
            TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(mat + k * ldm, w), x[k * incX], sums, sums);
    }

    /// <summary>acc += Σ_{i&lt;8} x[i·incX]·row_i over w floats: eight streams in flight, the sums touched once per eight rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows8(float* r, nint ldm, float* x, nint incX, float* acc, int w)
    {
        float* r0 = r, r1 = r + ldm, r2 = r + 2 * ldm, r3 = r + 3 * ldm, r4 = r + 4 * ldm, r5 = r + 5 * ldm, r6 = r + 6 * ldm, r7 = r + 7 * ldm;
        Vector512<float> v0 = Vector512.Create(x[0]), v1 = Vector512.Create(x[incX]), v2 = Vector512.Create(x[2 * incX]), v3 = Vector512.Create(x[3 * incX]);
        Vector512<float> v4 = Vector512.Create(x[4 * incX]), v5 = Vector512.Create(x[5 * incX]), v6 = Vector512.Create(x[6 * incX]), v7 = Vector512.Create(x[7 * incX]);
        int j = 0;
        for (; j + 16 <= w; j += 16)
        {
            var s = Vector512.FusedMultiplyAdd(v0, Vector512.Load(r0 + j), Vector512.Load(acc + j));
            var t = Vector512.Multiply(v1, Vector512.Load(r1 + j));
            s = Vector512.FusedMultiplyAdd(v2, Vector512.Load(r2 + j), s);
            t = Vector512.FusedMultiplyAdd(v3, Vector512.Load(r3 + j), t);
            s = Vector512.FusedMultiplyAdd(v4, Vector512.Load(r4 + j), s);
            t = Vector512.FusedMultiplyAdd(v5, Vector512.Load(r5 + j), t);
            s = Vector512.FusedMultiplyAdd(v6, Vector512.Load(r6 + j), s);
            t = Vector512.FusedMultiplyAdd(v7, Vector512.Load(r7 + j), t);
            (s + t).Store(acc + j);
        }
        for (; j < w; j++)
        {
            float s = acc[j];
            for (int i = 0; i < 8; i++) s = float.MultiplyAddEstimate(x[i * incX], r[i * ldm + j], s);
            acc[j] = s;
        }
    }

    /// <summary>acc += x0·r0 + x1·r1 + x2·r2 + x3·r3 over w floats (without AVX-512, and the last rows with it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows4(float* r0, float* r1, float* r2, float* r3, float x0, float x1, float x2, float x3, float* acc, int w)
    {
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> v0 = Vector256.Create(x0), v1 = Vector256.Create(x1), v2 = Vector256.Create(x2), v3 = Vector256.Create(x3);
            for (; j + 8 <= w; j += 8)
            {
                var s = Vector256.Load(acc + j);
                s = Vector256.MultiplyAddEstimate(v0, Vector256.Load(r0 + j), s);
                s = Vector256.MultiplyAddEstimate(v1, Vector256.Load(r1 + j), s);
                s = Vector256.MultiplyAddEstimate(v2, Vector256.Load(r2 + j), s);
                s = Vector256.MultiplyAddEstimate(v3, Vector256.Load(r3 + j), s);
                s.Store(acc + j);
            }
        }
        for (; j < w; j++)
            acc[j] = float.MultiplyAddEstimate(x3, r3[j], float.MultiplyAddEstimate(x2, r2[j], float.MultiplyAddEstimate(x1, r1[j], float.MultiplyAddEstimate(x0, r0[j], acc[j]))));
    }
}

using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace LoraRuntime.Cpu.Gemm;

/// <summary>
/// Matrix-vector kernels for M = 1 or N = 1 (decoding one token), where packing would cost more than it saves
/// and the time is the matrix streaming in from memory once.
/// </summary>
internal static unsafe class GemvKernels
{
    /// <summary>acc[0..w) = Σ_k x[k·incX]·mat[k·ldm + 0..w): rows streamed once, sums kept in registers.</summary>
    public static void Columns(float* mat, nint ldm, float* x, nint incX, int depth, float* acc, int w)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; j + 128 <= w; j += 128) Columns128(mat + j, ldm, x, incX, depth, acc + j);
            for (; j + 16 <= w; j += 16)
            {
                var s = Vector512<float>.Zero;
                float* row = mat + j;
                for (int k = 0; k < depth; k++, row += ldm)
                    s = Vector512.FusedMultiplyAdd(Vector512.Create(x[k * incX]), Vector512.Load(row), s);
                s.Store(acc + j);
            }
        }
        if (j < w)
        {
            var rest = new Span<float>(acc + j, w - j);
            rest.Clear();
            float* row = mat + j;
            for (int k = 0; k < depth; k++, row += ldm)
                TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(row, w - j), x[k * incX], rest, rest);
        }
    }

    private static void Columns128(float* row, nint ldm, float* x, nint incX, int depth, float* acc)
    {
        Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default;
        for (int k = 0; k < depth; k++, row += ldm)
        {
            var xk = Vector512.Create(x[k * incX]);
            s0 = Vector512.FusedMultiplyAdd(xk, Vector512.Load(row), s0);
            s1 = Vector512.FusedMultiplyAdd(xk, Vector512.Load(row + 16), s1);
            s2 = Vector512.FusedMultiplyAdd(xk, Vector512.Load(row + 32), s2);
            s3 = Vector512.FusedMultiplyAdd(xk, Vector512.Load(row + 48), s3);
            s4 = Vector512.FusedMultiplyAdd(xk, Vector512.Load(row + 64), s4);
            s5 = Vector512.FusedMultiplyAdd(xk, Vector512.Load(row + 80), s5);
            s6 = Vector512.FusedMultiplyAdd(xk, Vector512.Load(row + 96), s6);
            s7 = Vector512.FusedMultiplyAdd(xk, Vector512.Load(row + 112), s7);
        }
        s0.Store(acc); s1.Store(acc + 16); s2.Store(acc + 32); s3.Store(acc + 48);
        s4.Store(acc + 64); s5.Store(acc + 80); s6.Store(acc + 96); s7.Store(acc + 112);
    }
}

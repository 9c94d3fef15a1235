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

    /// <summary>
    /// acc[p·32 + 0..32) = Σ_k x[k]·panel_p[k·32 + 0..32) for <paramref name="panels"/> panels of 32 columns, each
    /// <paramref name="depth"/> rows contiguous and <paramref name="panelStride"/> floats after the previous (a
    /// <see cref="PackedMatrix"/>'s storage). Four panels go at once, each read as its own sequential stream, with the
    /// sums in registers (even and odd depths apart): one stream per thread leaves the memory system idle, four keep it busy.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Panels32(float* mat, nint panelStride, int panels, float* x, int depth, float* acc)
    {
        int p = 0;
        for (; p + 8 <= panels; p += 8) Panels32x8(mat + p * panelStride, panelStride, x, depth, acc + p * 32);
        for (; p + 4 <= panels; p += 4) Panels32x4(mat + p * panelStride, panelStride, x, depth, acc + p * 32);
        for (; p < panels; p++) Panel32(mat + p * panelStride, x, depth, acc + p * 32);
    }

    /// <summary>
    /// <see cref="Panels32"/> for panels of 16 columns with 256-bit vectors (the AVX2 kernel's NR): four panels at once,
    /// eight accumulators, within AVX2's sixteen registers.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Panels16(float* mat, nint panelStride, int panels, float* x, int depth, float* acc)
    {
        int p = 0;
        for (; p + 4 <= panels; p += 4)
        {
            float* m0 = mat + p * panelStride, m1 = m0 + panelStride, m2 = m1 + panelStride, m3 = m2 + panelStride;
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
            for (int k = 0; k < depth; k++)
            {
                nint o = (nint)k * 16;
                var e = Vector256.Create(x[k]);
                a0 = Vector256.FusedMultiplyAdd(e, Vector256.Load(m0 + o), a0);
                a1 = Vector256.FusedMultiplyAdd(e, Vector256.Load(m0 + o + 8), a1);
                a2 = Vector256.FusedMultiplyAdd(e, Vector256.Load(m1 + o), a2);
                a3 = Vector256.FusedMultiplyAdd(e, Vector256.Load(m1 + o + 8), a3);
                a4 = Vector256.FusedMultiplyAdd(e, Vector256.Load(m2 + o), a4);
                a5 = Vector256.FusedMultiplyAdd(e, Vector256.Load(m2 + o + 8), a5);
                a6 = Vector256.FusedMultiplyAdd(e, Vector256.Load(m3 + o), a6);
                a7 = Vector256.FusedMultiplyAdd(e, Vector256.Load(m3 + o + 8), a7);
            }
            float* y = acc + p * 16;
            a0.Store(y); a1.Store(y + 8); a2.Store(y + 16); a3.Store(y + 24);
            a4.Store(y + 32); a5.Store(y + 40); a6.Store(y + 48); a7.Store(y + 56);
        }
        for (; p < panels; p++)
        {
            float* m = mat + p * panelStride;
            Vector256<float> a0 = default, a1 = default;
            for (int k = 0; k < depth; k++)
            {
                var e = Vector256.Create(x[k]);
                a0 = Vector256.FusedMultiplyAdd(e, Vector256.Load(m + (nint)k * 16), a0);
                a1 = Vector256.FusedMultiplyAdd(e, Vector256.Load(m + (nint)k * 16 + 8), a1);
            }
            a0.Store(acc + p * 16);
            a1.Store(acc + p * 16 + 8);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Panels32x8(float* m0, nint stride, float* x, int depth, float* acc)
    {
        float* m1 = m0 + stride, m2 = m1 + stride, m3 = m2 + stride, m4 = m3 + stride, m5 = m4 + stride, m6 = m5 + stride, m7 = m6 + stride;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        for (int k = 0; k < depth; k++)
        {
            nint o = (nint)k * 32;
            var e = Vector512.Create(x[k]);
            a0 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m0 + o), a0);
            c0 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m0 + o + 16), c0);
            a1 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m1 + o), a1);
            c1 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m1 + o + 16), c1);
            a2 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m2 + o), a2);
            c2 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m2 + o + 16), c2);
            a3 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m3 + o), a3);
            c3 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m3 + o + 16), c3);
            a4 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m4 + o), a4);
            c4 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m4 + o + 16), c4);
            a5 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m5 + o), a5);
            c5 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m5 + o + 16), c5);
            a6 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m6 + o), a6);
            c6 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m6 + o + 16), c6);
            a7 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m7 + o), a7);
            c7 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m7 + o + 16), c7);
        }
        a0.Store(acc); c0.Store(acc + 16);
        a1.Store(acc + 32); c1.Store(acc + 48);
        a2.Store(acc + 64); c2.Store(acc + 80);
        a3.Store(acc + 96); c3.Store(acc + 112);
        a4.Store(acc + 128); c4.Store(acc + 144);
        a5.Store(acc + 160); c5.Store(acc + 176);
        a6.Store(acc + 192); c6.Store(acc + 208);
        a7.Store(acc + 224); c7.Store(acc + 240);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Panels32x4(float* m0, nint stride, float* x, int depth, float* acc)
    {
        float* m1 = m0 + stride, m2 = m1 + stride, m3 = m2 + stride;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default, b4 = default, b5 = default, b6 = default, b7 = default;
        int k = 0;
        for (; k + 2 <= depth; k += 2)
        {
            nint o = (nint)k * 32;
            var e = Vector512.Create(x[k]);
            a0 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m0 + o), a0);
            a1 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m0 + o + 16), a1);
            a2 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m1 + o), a2);
            a3 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m1 + o + 16), a3);
            a4 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m2 + o), a4);
            a5 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m2 + o + 16), a5);
            a6 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m3 + o), a6);
            a7 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m3 + o + 16), a7);
            var f = Vector512.Create(x[k + 1]);
            b0 = Vector512.FusedMultiplyAdd(f, Vector512.Load(m0 + o + 32), b0);
            b1 = Vector512.FusedMultiplyAdd(f, Vector512.Load(m0 + o + 48), b1);
            b2 = Vector512.FusedMultiplyAdd(f, Vector512.Load(m1 + o + 32), b2);
            b3 = Vector512.FusedMultiplyAdd(f, Vector512.Load(m1 + o + 48), b3);
            b4 = Vector512.FusedMultiplyAdd(f, Vector512.Load(m2 + o + 32), b4);
            b5 = Vector512.FusedMultiplyAdd(f, Vector512.Load(m2 + o + 48), b5);
            b6 = Vector512.FusedMultiplyAdd(f, Vector512.Load(m3 + o + 32), b6);
            b7 = Vector512.FusedMultiplyAdd(f, Vector512.Load(m3 + o + 48), b7);
        }
        if (k < depth)
        {
            nint o = (nint)k * 32;
            var e = Vector512.Create(x[k]);
            a0 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m0 + o), a0);
            a1 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m0 + o + 16), a1);
            a2 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m1 + o), a2);
            a3 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m1 + o + 16), a3);
            a4 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m2 + o), a4);
            a5 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m2 + o + 16), a5);
            a6 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m3 + o), a6);
            a7 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m3 + o + 16), a7);
        }
        (a0 + b0).Store(acc);
        (a1 + b1).Store(acc + 16);
        (a2 + b2).Store(acc + 32);
        (a3 + b3).Store(acc + 48);
        (a4 + b4).Store(acc + 64);
        (a5 + b5).Store(acc + 80);
        (a6 + b6).Store(acc + 96);
        (a7 + b7).Store(acc + 112);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Panel32(float* m, float* x, int depth, float* acc)
    {
        Vector512<float> a0 = default, a1 = default, b0 = default, b1 = default;
        int k = 0;
        for (; k + 2 <= depth; k += 2)
        {
            nint o = (nint)k * 32;
            var e = Vector512.Create(x[k]);
            a0 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m + o), a0);
            a1 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m + o + 16), a1);
            var f = Vector512.Create(x[k + 1]);
            b0 = Vector512.FusedMultiplyAdd(f, Vector512.Load(m + o + 32), b0);
            b1 = Vector512.FusedMultiplyAdd(f, Vector512.Load(m + o + 48), b1);
        }
        if (k < depth)
        {
            var e = Vector512.Create(x[k]);
            a0 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m + (nint)k * 32), a0);
            a1 = Vector512.FusedMultiplyAdd(e, Vector512.Load(m + (nint)k * 32 + 16), a1);
        }
        (a0 + b0).Store(acc);
        (a1 + b1).Store(acc + 16);
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

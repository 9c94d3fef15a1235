using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using LoraRuntime.Quantization;

namespace LoraRuntime.Cpu.Quantized;

/// <summary>
/// Dot products of one stored weight row with a few activation rows, the weight read once for all of them: Q8_0 and
/// Q4_0 against <see cref="Q8Activations"/> with integer products summed exactly per block (AVX-VNNI where the CPU has
/// it, else AVX2's multiply-add of bytes, else scalar), BF16 and F16 converted in registers, NF4 decoded into a row
/// buffer first.
/// </summary>
internal static unsafe class QuantizedDot
{
    /// <summary>The most activation rows one call handles.</summary>
    public const int MaxRows = 4;

    private static readonly bool s_vnni = AvxVnni.IsSupported;
    private static readonly bool s_avx2 = Avx2.IsSupported && Fma.IsSupported;

    /// <summary>
    /// sums[i] = Σ_k W[row, k]·x_i[k] for <paramref name="rows"/> ≤ <see cref="MaxRows"/> activation rows; a Q8_0 or
    /// Q4_0 row against the quantized activations <paramref name="q"/> with <paramref name="integer"/>, else decoded.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Row(WeightFormat format, bool integer, byte* w, int k, float* x, int ldx, in Q8Activations q, int rows, float* decoded, float* sums)
    {
        switch (format)
        {
            case WeightFormat.Q8_0 when integer: Q8(w, q, rows, sums); break;
            case WeightFormat.Q4_0 when integer: Q4(w, q, rows, sums); break;
            case WeightFormat.BF16 when Avx512F.IsSupported: SixteenBit(w, k, x, ldx, rows, sums, half: false); break;
            case WeightFormat.F16 when Avx512F.IsSupported: SixteenBit(w, k, x, ldx, rows, sums, half: true); break;
            default:
                WeightRows.Decode(format, w, decoded, k);
                var row = new ReadOnlySpan<float>(decoded, k);
                for (int i = 0; i < rows; i++) sums[i] = TensorPrimitives.Dot(new ReadOnlySpan<float>(x + (long)i * ldx, k), row);
                break;
        }
    }

    private static void Q8(byte* w, in Q8Activations q, int rows, float* sums)
    {
        const int size = 2 + QuantBlocks.BlockSize;
        int blocks = q.Blocks, k = blocks * QuantBlocks.BlockSize;
        if (!s_avx2)
        {
            for (int i = 0; i < rows; i++)
            {
                float total = 0;
                for (int b = 0; b < blocks; b++)
                {
                    sbyte* wq = (sbyte*)(w + b * size + 2);
                    sbyte* aq = q.Quants + (long)i * k + b * QuantBlocks.BlockSize;
                    int s = 0;
                    for (int j = 0; j < QuantBlocks.BlockSize; j++) s += wq[j] * aq[j];
                    total += Scale(w + b * size) * q.Scale(i, b) * s;
                }
                sums[i] = total;
            }
            return;
        }
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        var ones = Vector256.Create((short)1);
        for (int b = 0; b < blocks; b++)
        {
            byte* block = w + b * size;
            float d = Scale(block);
            var wq = Vector256.Load((sbyte*)(block + 2));
            var ax = Avx2.Abs(wq); // |w| as unsigned bytes; the sign moves to the activations
            for (int i = 0; i < rows; i++)
            {
                var aq = Vector256.Load(q.Quants + (long)i * k + b * QuantBlocks.BlockSize);
                var products = Products(ax, Avx2.Sign(aq, wq), ones);
                var scale = Vector256.Create(d * q.Scale(i, b));
                switch (i)
                {
                    case 0: acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(products), scale, acc0); break;
                    case 1: acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(products), scale, acc1); break;
                    case 2: acc2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(products), scale, acc2); break;
                    default: acc3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(products), scale, acc3); break;
                }
            }
        }
        Store(sums, rows, acc0, acc1, acc2, acc3);
    }

    private static void Q4(byte* w, in Q8Activations q, int rows, float* sums)
    {
        const int size = 2 + QuantBlocks.BlockSize / 2;
        int blocks = q.Blocks, k = blocks * QuantBlocks.BlockSize;
        if (!s_avx2)
        {
            for (int i = 0; i < rows; i++)
            {
                float total = 0;
                for (int b = 0; b < blocks; b++)
                {
                    byte* wq = w + b * size + 2;
                    sbyte* aq = q.Quants + (long)i * k + b * QuantBlocks.BlockSize;
                    int s = 0;
                    for (int j = 0; j < QuantBlocks.BlockSize / 2; j++)
                        s += ((wq[j] & 0x0F) - 8) * aq[j] + ((wq[j] >> 4) - 8) * aq[j + QuantBlocks.BlockSize / 2];
                    total += Scale(w + b * size) * q.Scale(i, b) * s;
                }
                sums[i] = total;
            }
            return;
        }
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        float c0 = 0, c1 = 0, c2 = 0, c3 = 0; // Σ d_w · 8·d_a·Σq_a: the offset of 8, taken out of the integer products
        var ones = Vector256.Create((short)1);
        var low = Vector128.Create((byte)0x0F);
        for (int b = 0; b < blocks; b++)
        {
            byte* block = w + b * size;
            float d = Scale(block);
            var packed = Vector128.Load(block + 2);
            // Low nibbles are weights 0–15, high nibbles 16–31: as unsigned bytes in activation order.
            var wq = Vector256.Create(packed & low, Vector128.ShiftRightLogical(packed, 4) & low);
            for (int i = 0; i < rows; i++)
            {
                float da = q.Scale(i, b);
                var aq = Vector256.Load(q.Quants + (long)i * k + b * QuantBlocks.BlockSize);
                var products = Products(wq, aq, ones);
                var scale = Vector256.Create(d * da);
                float offset = d * (-q.Compensation(i, b) * da); // d_w · 8·Σq_a·d_a
                switch (i)
                {
                    case 0: acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(products), scale, acc0); c0 += offset; break;
                    case 1: acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(products), scale, acc1); c1 += offset; break;
                    case 2: acc2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(products), scale, acc2); c2 += offset; break;
                    default: acc3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(products), scale, acc3); c3 += offset; break;
                }
            }
        }
        Store(sums, rows, acc0, acc1, acc2, acc3);
        sums[0] -= c0;
        if (rows > 1) sums[1] -= c1;
        if (rows > 2) sums[2] -= c2;
        if (rows > 3) sums[3] -= c3;
    }

    /// <summary>8 int32 sums of 4 adjacent u8·s8 products each (|u| ≤ 127 keeps AVX2's 16-bit pair sums exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Products(Vector256<byte> u, Vector256<sbyte> s, Vector256<short> ones) =>
        s_vnni ? AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, u, s)
               : Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, s), ones);

    /// <summary>A BF16 or F16 (<paramref name="half"/>) row, widened to float32 in registers, against up to four rows.</summary>
    private static void SixteenBit(byte* w, int k, float* x, int ldx, int rows, float* sums, bool half)
    {
        ushort* src = (ushort*)w;
        Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        var magnitude = Vector512.Create(0x7FFFu);
        var sign = Vector512.Create(0x8000u);
        var scale = Vector512.Create(5.192296858534828e33f);
        int j = 0;
        for (; j + 16 <= k; j += 16)
        {
            var bits = Avx512F.ConvertToVector512UInt32(Vector256.Load(src + j));
            var wf = half ? WeightRows.HalfToSingle(bits, magnitude, sign, scale) : Avx512F.ShiftLeftLogical(bits, 16).AsSingle();
            acc0 = Avx512F.FusedMultiplyAdd(wf, Vector512.Load(x + j), acc0);
            if (rows > 1) acc1 = Avx512F.FusedMultiplyAdd(wf, Vector512.Load(x + ldx + j), acc1);
            if (rows > 2) acc2 = Avx512F.FusedMultiplyAdd(wf, Vector512.Load(x + 2L * ldx + j), acc2);
            if (rows > 3) acc3 = Avx512F.FusedMultiplyAdd(wf, Vector512.Load(x + 3L * ldx + j), acc3);
        }
        sums[0] = Vector512.Sum(acc0);
        if (rows > 1) sums[1] = Vector512.Sum(acc1);
        if (rows > 2) sums[2] = Vector512.Sum(acc2);
        if (rows > 3) sums[3] = Vector512.Sum(acc3);
        for (; j < k; j++)
        {
            float v = half ? WeightRows.HalfToSingle(src[j]) : BitConverter.UInt32BitsToSingle((uint)src[j] << 16);
            for (int i = 0; i < rows; i++) sums[i] += v * x[(long)i * ldx + j];
        }
    }

    private static void Store(float* sums, int rows, Vector256<float> acc0, Vector256<float> acc1, Vector256<float> acc2, Vector256<float> acc3)
    {
        sums[0] = Vector256.Sum(acc0);
        if (rows > 1) sums[1] = Vector256.Sum(acc1);
        if (rows > 2) sums[2] = Vector256.Sum(acc2);
        if (rows > 3) sums[3] = Vector256.Sum(acc3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Scale(byte* block) => WeightRows.HalfToSingle(Unsafe.ReadUnaligned<ushort>(block));
}

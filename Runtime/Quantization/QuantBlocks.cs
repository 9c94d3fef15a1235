using System.Buffers.Binary;
using System.Runtime.Intrinsics;

namespace LoraRuntime.Quantization;

/// <summary>The block formats of llama.cpp that the runtime reads and computes with.</summary>
public enum QuantFormat
{
    /// <summary>32 weights a block: an F16 scale d, then 32 int8 q; w = d·q. 34 bytes a block (8.5 bits a weight).</summary>
    Q8_0,

    /// <summary>
    /// 32 weights a block: an F16 scale d, then 16 bytes whose low nibbles are weights 0–15 and high nibbles weights
    /// 16–31; w = d·(q − 8). 18 bytes a block (4.5 bits a weight).
    /// </summary>
    Q4_0,
}

/// <summary>
/// Quantizes float32 rows into llama.cpp's Q8_0 and Q4_0 blocks (the same rounding, so the bytes equal llama.cpp's
/// for the same input), dequantizes them, and takes dot products with a row quantized to Q8_0 as llama.cpp's CPU path
/// does for activations: integer products summed exactly within a block, then scaled by the two blocks' scales. Rows
/// are whole blocks (a multiple of 32 values); nothing here allocates.
/// </summary>
public static class QuantBlocks
{
    /// <summary>Weights a block holds in both formats.</summary>
    public const int BlockSize = 32;

    /// <summary>The bytes of one block of <paramref name="format"/>.</summary>
    public static int BlockBytes(QuantFormat format) => format switch
    {
        QuantFormat.Q8_0 => 2 + BlockSize,
        QuantFormat.Q4_0 => 2 + BlockSize / 2,
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, $"format: expected Q8_0 or Q4_0; got {format}"),
    };

    /// <summary>The bytes a row of <paramref name="count"/> values takes in <paramref name="format"/> (a multiple of 32).</summary>
    public static int RowBytes(QuantFormat format, int count)
    {
        CheckCount(count, nameof(count));
        return count / BlockSize * BlockBytes(format);
    }

    /// <summary>Quantizes <paramref name="values"/> (a multiple of 32) into <paramref name="blocks"/> (<see cref="RowBytes"/> bytes).</summary>
    public static void Quantize(QuantFormat format, ReadOnlySpan<float> values, Span<byte> blocks)
    {
        CheckRow(format, values.Length, blocks.Length, nameof(blocks));
        int size = BlockBytes(format);
        for (int b = 0; b < values.Length / BlockSize; b++)
        {
            var x = values.Slice(b * BlockSize, BlockSize);
            var block = blocks.Slice(b * size, size);
            if (format == QuantFormat.Q8_0) QuantizeQ8(x, block);
            else QuantizeQ4(x, block);
        }
    }

    /// <summary>The values of <paramref name="blocks"/>, into <paramref name="values"/> (a multiple of 32).</summary>
    public static void Dequantize(QuantFormat format, ReadOnlySpan<byte> blocks, Span<float> values)
    {
        CheckRow(format, values.Length, blocks.Length, nameof(blocks));
        int size = BlockBytes(format);
        for (int b = 0; b < values.Length / BlockSize; b++)
        {
            var block = blocks.Slice(b * size, size);
            float d = Scale(block);
            var x = values.Slice(b * BlockSize, BlockSize);
            if (format == QuantFormat.Q8_0)
                for (int i = 0; i < BlockSize; i++) x[i] = d * (sbyte)block[2 + i];
            else
                for (int i = 0; i < BlockSize / 2; i++)
                {
                    x[i] = d * ((block[2 + i] & 0x0F) - 8);
                    x[i + BlockSize / 2] = d * ((block[2 + i] >> 4) - 8);
                }
        }
    }

    /// <summary>
    /// Σ w·a over a row: <paramref name="weights"/> in <paramref name="format"/>, <paramref name="activations"/> the
    /// same number of values quantized to Q8_0. Within a block the products are integers summed exactly; each block's
    /// sum is scaled by d_w·d_a in float32, as llama.cpp does.
    /// </summary>
    public static float Dot(QuantFormat format, ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations)
    {
        int size = BlockBytes(format), q8 = BlockBytes(QuantFormat.Q8_0);
        if (weights.Length % size != 0)
            throw new ArgumentException($"weights: expected whole {format} blocks of {size} bytes; got {weights.Length} bytes", nameof(weights));
        int blocks = weights.Length / size;
        if (activations.Length != blocks * q8)
            throw new ArgumentException($"activations: expected {blocks} Q8_0 blocks ({blocks * q8} bytes) for {blocks} weight blocks; got {activations.Length} bytes", nameof(activations));
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            var w = weights.Slice(b * size, size);
            var a = activations.Slice(b * q8, q8);
            int products = format == QuantFormat.Q8_0 ? DotQ8(w[2..], a[2..]) : DotQ4(w[2..], a[2..]);
            sum += Scale(w) * Scale(a) * products;
        }
        return sum;
    }

    // llama.cpp's quantize_row_q8_0_ref: d = max|x| / 127, q = round(x / d).
    private static void QuantizeQ8(ReadOnlySpan<float> x, Span<byte> block)
    {
        float amax = 0;
        foreach (float v in x) amax = Math.Max(amax, Math.Abs(v));
        float d = amax / 127f, id = d != 0 ? 1f / d : 0f;
        BinaryPrimitives.WriteHalfLittleEndian(block, (Half)d);
        for (int i = 0; i < BlockSize; i++) block[2 + i] = (byte)(sbyte)MathF.Round(x[i] * id, MidpointRounding.AwayFromZero);
    }

    // llama.cpp's quantize_row_q4_0_ref: the value of largest magnitude, with its sign, maps to −8; q = min(15, (int8)(x/d + 8.5)).
    private static void QuantizeQ4(ReadOnlySpan<float> x, Span<byte> block)
    {
        float amax = 0, max = 0;
        foreach (float v in x)
            if (Math.Abs(v) > amax)
            {
                amax = Math.Abs(v);
                max = v;
            }
        float d = max / -8f, id = d != 0 ? 1f / d : 0f;
        BinaryPrimitives.WriteHalfLittleEndian(block, (Half)d);
        for (int i = 0; i < BlockSize / 2; i++)
        {
            int lo = Math.Min(15, (int)(sbyte)(x[i] * id + 8.5f));
            int hi = Math.Min(15, (int)(sbyte)(x[i + BlockSize / 2] * id + 8.5f));
            block[2 + i] = (byte)(lo | hi << 4);
        }
    }

    private static float Scale(ReadOnlySpan<byte> block) => (float)BinaryPrimitives.ReadHalfLittleEndian(block);

    /// <summary>Σ q_w·q_a over 32 int8 pairs, exactly: widened to 16 bits, multiplied, summed in 32.</summary>
    private static int DotQ8(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a)
    {
        if (Vector256.IsHardwareAccelerated)
        {
            var (w0, w1) = Vector256.Widen(Vector256.Create<byte>(w).AsSByte());
            var (a0, a1) = Vector256.Widen(Vector256.Create<byte>(a).AsSByte());
            return SumProducts(w0, a0) + SumProducts(w1, a1);
        }
        int sum = 0;
        for (int i = 0; i < BlockSize; i++) sum += (sbyte)w[i] * (sbyte)a[i];
        return sum;
    }

    /// <summary>Σ (q_w − 8)·q_a over a Q4_0 block's 32 nibbles and a Q8_0 block's 32 int8.</summary>
    private static int DotQ4(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a)
    {
        if (Vector128.IsHardwareAccelerated && Vector256.IsHardwareAccelerated)
        {
            var packed = Vector128.Create<byte>(w);
            var eight = Vector128.Create((sbyte)8);
            var lo = (packed & Vector128.Create((byte)0x0F)).AsSByte() - eight;
            var hi = Vector128.ShiftRightLogical(packed, 4).AsSByte() - eight;
            var (a0, a1) = Vector256.Widen(Vector256.Create<byte>(a).AsSByte());
            return SumProducts(Vector256.WidenLower(Vector256.Create(lo, lo)), a0) + SumProducts(Vector256.WidenLower(Vector256.Create(hi, hi)), a1);
        }
        int sum = 0;
        for (int i = 0; i < BlockSize / 2; i++)
            sum += ((w[i] & 0x0F) - 8) * (sbyte)a[i] + ((w[i] >> 4) - 8) * (sbyte)a[i + BlockSize / 2];
        return sum;
    }

    /// <summary>Σ x·y of 16 int16 pairs (|x·y| ≤ 2¹⁴ each: the sum fits 32 bits).</summary>
    private static int SumProducts(Vector256<short> x, Vector256<short> y)
    {
        var (x0, x1) = Vector256.Widen(x);
        var (y0, y1) = Vector256.Widen(y);
        return Vector256.Sum(x0 * y0 + x1 * y1);
    }

    private static void CheckCount(int count, string name)
    {
        if (count < 0 || count % BlockSize != 0)
            throw new ArgumentException($"{name}: quantized rows hold whole blocks of {BlockSize} values; got {count}", name);
    }

    private static void CheckRow(QuantFormat format, int count, int bytes, string name)
    {
        CheckCount(count, "values");
        int expected = count / BlockSize * BlockBytes(format);
        if (bytes != expected)
            throw new ArgumentException($"{name}: {count} values take {expected} bytes of {format}; got {bytes}", name);
    }
}

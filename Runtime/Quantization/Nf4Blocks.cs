namespace LoraRuntime.Quantization;

/// <summary>
/// bitsandbytes' 4-bit NormalFloat (NF4), the base format of QLoRA: blocks of 64 weights, each block's absolute maximum
/// kept in float32, each weight the nearest of 16 code values (quantiles of a normal distribution, scaled to [−1, 1])
/// of w / absmax, two weights a byte, the first in the high nibble. Dequantized as code[q]·absmax in float32, which
/// is what bitsandbytes computes, so a base it quantized comes back bit for bit (a checkpoint's double-quantized absmax
/// is dequantized by the loader, <c>BitsAndBytesWeight</c>; quantizing here keeps float32 absmax). Nothing here allocates.
/// </summary>
public static class Nf4Blocks
{
    /// <summary>Weights a block holds (bitsandbytes' default for QLoRA).</summary>
    public const int BlockSize = 64;

    /// <summary>The 16 code values, ascending: bitsandbytes' NF4 table, float32.</summary>
    public static ReadOnlySpan<float> CodeBook =>
    [
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f, -0.18477343022823334f,
        -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
        0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
    ];

    /// <summary>The bytes of <paramref name="count"/> packed weights (two a byte) and the number of blocks (absmax values).</summary>
    public static (int Bytes, int Blocks) Sizes(int count)
    {
        if (count < 0 || count % BlockSize != 0)
            throw new ArgumentException($"count: NF4 rows hold whole blocks of {BlockSize} values; got {count}", nameof(count));
        return (count / 2, count / BlockSize);
    }

    /// <summary>Quantizes <paramref name="values"/> into <paramref name="packed"/> and the blocks' <paramref name="absmax"/>.</summary>
    public static void Quantize(ReadOnlySpan<float> values, Span<byte> packed, Span<float> absmax)
    {
        Check(values.Length, packed.Length, absmax.Length);
        var code = CodeBook;
        for (int b = 0; b < absmax.Length; b++)
        {
            var x = values.Slice(b * BlockSize, BlockSize);
            float max = 0;
            foreach (float v in x) max = Math.Max(max, Math.Abs(v));
            absmax[b] = max;
            float scale = max > 0 ? 1f / max : 0f;
            for (int i = 0; i < BlockSize; i += 2)
                packed[(b * BlockSize + i) / 2] = (byte)(Nearest(code, x[i] * scale) << 4 | Nearest(code, x[i + 1] * scale));
        }
    }

    /// <summary>The weights of <paramref name="packed"/> and <paramref name="absmax"/>, into <paramref name="values"/>.</summary>
    public static void Dequantize(ReadOnlySpan<byte> packed, ReadOnlySpan<float> absmax, Span<float> values)
    {
        Check(values.Length, packed.Length, absmax.Length);
        var code = CodeBook;
        for (int i = 0; i < packed.Length; i++)
        {
            float m = absmax[2 * i / BlockSize];
            values[2 * i] = code[packed[i] >> 4] * m;
            values[2 * i + 1] = code[packed[i] & 0x0F] * m;
        }
    }

    /// <summary>
    /// The decision points between neighbouring code values: bitsandbytes' quantization kernel compares with these
    /// literals (the midpoints of the float64 code values, rounded to float32 — one of them a bit away from the midpoint
    /// of the float32 code values), so they are taken as it writes them.
    /// </summary>
    public static ReadOnlySpan<float> Thresholds =>
    [
        -0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f, -0.33967943489551544f, -0.23460740596055984f,
        -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f, 0.1202552504837513f, 0.2035212516784668f,
        0.2920137718319893f, 0.3893125355243683f, 0.5016634166240692f, 0.6427869200706482f, 0.8614784181118011f,
    ];

    /// <summary>The index of the code value nearest to <paramref name="x"/> (in [−1, 1]): above a threshold, the upper neighbour.</summary>
    private static int Nearest(ReadOnlySpan<float> code, float x)
    {
        var t = Thresholds;
        int q = 0;
        while (q < t.Length && x > t[q]) q++;
        return q;
    }

    private static void Check(int count, int bytes, int blocks)
    {
        var (expectedBytes, expectedBlocks) = Sizes(count);
        if (bytes != expectedBytes) throw new ArgumentException($"packed: {count} values take {expectedBytes} bytes; got {bytes}", "packed");
        if (blocks != expectedBlocks) throw new ArgumentException($"absmax: {count} values have {expectedBlocks} blocks; got {blocks}", "absmax");
    }
}

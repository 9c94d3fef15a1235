using System.Buffers.Binary;

namespace LoraRuntime.Quantization;

/// <summary>
/// llama.cpp's K-quant super-blocks of 256 weights that published Q4_K_M files use, decoded exactly as its
/// dequantize_row_q4_K / dequantize_row_q6_K compute (the same float32 operations in the same order):
/// Q4_K (144 bytes: F16 d, F16 dmin, 12 bytes of eight 6-bit scales and minimums, 128 bytes of nibbles; eight
/// sub-blocks of 32, w = d·scale·q − dmin·min) and Q6_K (210 bytes: 128 bytes of low nibbles, 64 of high bit pairs,
/// sixteen int8 scales, F16 d; sixteen sub-blocks of 16, w = d·scale·(q − 32)). Read only: the runtime does not write
/// K-quants. Nothing here allocates.
/// </summary>
public static class KQuantBlocks
{
    /// <summary>Weights a super-block holds.</summary>
    public const int BlockSize = 256;

    /// <summary>Bytes of a Q4_K super-block.</summary>
    public const int Q4KBytes = 144;

    /// <summary>Bytes of a Q6_K super-block.</summary>
    public const int Q6KBytes = 210;

    /// <summary>Decodes Q4_K super-blocks into <paramref name="values"/> (256 a block).</summary>
    public static void DecodeQ4K(ReadOnlySpan<byte> blocks, Span<float> values)
    {
        Check(blocks.Length, Q4KBytes, values.Length);
        for (int b = 0; b < values.Length / BlockSize; b++)
        {
            var x = blocks.Slice(b * Q4KBytes, Q4KBytes);
            var y = values.Slice(b * BlockSize, BlockSize);
            float d = WeightRows.HalfToSingle(BinaryPrimitives.ReadUInt16LittleEndian(x));
            float min = WeightRows.HalfToSingle(BinaryPrimitives.ReadUInt16LittleEndian(x[2..]));
            var scales = x.Slice(4, 12);
            var q = x.Slice(16, 128);
            int at = 0;
            for (int j = 0, sub = 0; j < BlockSize; j += 64, sub += 2)
            {
                var (sc1, m1) = ScaleMin(sub, scales);
                var (sc2, m2) = ScaleMin(sub + 1, scales);
                float d1 = d * sc1, min1 = min * m1, d2 = d * sc2, min2 = min * m2;
                var qs = q.Slice(j / 2, 32);
                for (int l = 0; l < 32; l++) y[at++] = d1 * (qs[l] & 0xF) - min1;
                for (int l = 0; l < 32; l++) y[at++] = d2 * (qs[l] >> 4) - min2;
            }
        }
    }

    /// <summary>Decodes Q6_K super-blocks into <paramref name="values"/> (256 a block).</summary>
    public static void DecodeQ6K(ReadOnlySpan<byte> blocks, Span<float> values)
    {
        Check(blocks.Length, Q6KBytes, values.Length);
        for (int b = 0; b < values.Length / BlockSize; b++)
        {
            var x = blocks.Slice(b * Q6KBytes, Q6KBytes);
            var y = values.Slice(b * BlockSize, BlockSize);
            float d = WeightRows.HalfToSingle(BinaryPrimitives.ReadUInt16LittleEndian(x[208..]));
            for (int n = 0; n < 2; n++)
            {
                var ql = x.Slice(64 * n, 64);
                var qh = x.Slice(128 + 32 * n, 32);
                var sc = x.Slice(192 + 8 * n, 8);
                var o = y.Slice(128 * n, 128);
                for (int l = 0; l < 32; l++)
                {
                    int s = l / 16;
                    int q1 = ((ql[l] & 0xF) | ((qh[l] >> 0 & 3) << 4)) - 32;
                    int q2 = ((ql[l + 32] & 0xF) | ((qh[l] >> 2 & 3) << 4)) - 32;
                    int q3 = ((ql[l] >> 4) | ((qh[l] >> 4 & 3) << 4)) - 32;
                    int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6 & 3) << 4)) - 32;
                    o[l] = d * (sbyte)sc[s] * q1;
                    o[l + 32] = d * (sbyte)sc[s + 2] * q2;
                    o[l + 64] = d * (sbyte)sc[s + 4] * q3;
                    o[l + 96] = d * (sbyte)sc[s + 6] * q4;
                }
            }
        }
    }

    /// <summary>Sub-block <paramref name="j"/>'s 6-bit scale and minimum from Q4_K's 12 packed bytes (llama.cpp's get_scale_min_k4).</summary>
    public static (int Scale, int Min) ScaleMin(int j, ReadOnlySpan<byte> q) => j < 4
        ? (q[j] & 63, q[j + 4] & 63)
        : ((q[j + 4] & 0xF) | (q[j - 4] >> 6 << 4), (q[j + 4] >> 4) | (q[j] >> 6 << 4));

    private static void Check(int bytes, int blockBytes, int count)
    {
        if (count % BlockSize != 0)
            throw new ArgumentException($"values: K-quant rows hold whole super-blocks of {BlockSize}; got {count}", "values");
        if (bytes != count / BlockSize * blockBytes)
            throw new ArgumentException($"blocks: {count} values take {count / BlockSize * blockBytes} bytes; got {bytes}", "blocks");
    }
}

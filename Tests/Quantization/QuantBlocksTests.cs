using System.Buffers.Binary;
using LoraRuntime.Quantization;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Quantization;

/// <summary>
/// llama.cpp's Q8_0 and Q4_0 blocks: bytes of hand-worked blocks, round trips within the format's error bound, and dot
/// products against float64 over the dequantized values, for row lengths of one block to many and every bad input.
/// </summary>
public sealed class QuantBlocksTests
{
    private static readonly QuantFormat[] Formats = [QuantFormat.Q8_0, QuantFormat.Q4_0];

    private static byte[] Quantize(QuantFormat format, float[] values)
    {
        var blocks = new byte[QuantBlocks.RowBytes(format, values.Length)];
        QuantBlocks.Quantize(format, values, blocks);
        return blocks;
    }

    private static float[] Dequantize(QuantFormat format, byte[] blocks, int count)
    {
        var values = new float[count];
        QuantBlocks.Dequantize(format, blocks, values);
        return values;
    }

    [Fact]
    public void Hand_worked_blocks_have_llama_cpps_bytes()
    {
        // All ones. Q8_0: d = 1/127, every q = 127. Q4_0: the largest value 1 maps to −8, d = −1/8, q = trunc(−8 + 8.5) = 0.
        var ones = Enumerable.Repeat(1f, 32).ToArray();
        var q8 = Quantize(QuantFormat.Q8_0, ones);
        Assert.Equal((Half)(1f / 127), BinaryPrimitives.ReadHalfLittleEndian(q8));
        Assert.All(q8[2..], b => Assert.Equal(127, (sbyte)b));
        var q4 = Quantize(QuantFormat.Q4_0, ones);
        Assert.Equal((Half)(-0.125f), BinaryPrimitives.ReadHalfLittleEndian(q4));
        Assert.All(q4[2..], b => Assert.Equal(0, b));
        Assert.All(Dequantize(QuantFormat.Q4_0, q4, 32), v => Assert.Equal(1f, v));
        // +2, −2, … Q4_0: max = +2 (the first of largest magnitude), d = −0.25; +2 → 0; −2 → trunc(16.5) = 16, clamped to 15 → −1.75.
        var signs = Enumerable.Range(0, 32).Select(i => i % 2 == 0 ? 2f : -2f).ToArray();
        q4 = Quantize(QuantFormat.Q4_0, signs);
        Assert.Equal((Half)(-0.25f), BinaryPrimitives.ReadHalfLittleEndian(q4));
        Assert.Equal(0x00, q4[2 + 0]); // elements 0 (low nibble) and 16 (high nibble): +2 → 0
        Assert.Equal(0xFF, q4[2 + 1]); // elements 1 and 17: −2 → 15
        var back = Dequantize(QuantFormat.Q4_0, q4, 32);
        Assert.Equal(2f, back[0]);
        Assert.Equal(-1.75f, back[1]);
        // 0 … 31. Q8_0: d = 31/127, q_i = round(127·i/31), halves away from zero.
        var ramp = Enumerable.Range(0, 32).Select(i => (float)i).ToArray();
        q8 = Quantize(QuantFormat.Q8_0, ramp);
        for (int i = 0; i < 32; i++) Assert.Equal((int)Math.Round(i * (127f / 31f), MidpointRounding.AwayFromZero), (sbyte)q8[2 + i]);
        // All zeros: d = 0, every q neutral, and the values come back as zeros.
        foreach (var format in Formats) Assert.All(Dequantize(format, Quantize(format, new float[32]), 32), v => Assert.Equal(0f, v));
    }

    public static TheoryData<int> Lengths => new() { 32, 64, 96, 1024, 4096 + 32 };

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Round_trips_stay_within_the_formats_error_bound(int n)
    {
        var x = Reference.Random(n, n).Select((v, i) => v * (1 + i % 7)).ToArray(); // blocks of different scales
        foreach (var format in Formats)
        {
            var blocks = Quantize(format, x);
            var back = Dequantize(format, blocks, n);
            int size = QuantBlocks.BlockBytes(format);
            for (int b = 0; b < n / 32; b++)
            {
                float d = Math.Abs((float)BinaryPrimitives.ReadHalfLittleEndian(blocks.AsSpan(b * size)));
                // Rounding to the grid costs d/2; the scale's F16 rounding (2⁻¹¹ relative) up to 127 (Q8_0) or 8 (Q4_0) steps;
                // Q4_0 clamps the value opposite its largest to 7 steps, a whole step off.
                double bound = format == QuantFormat.Q8_0 ? d * (0.5 + 127.0 / 2048) : d * (1 + 8.0 / 2048);
                for (int i = b * 32; i < b * 32 + 32; i++)
                    Assert.True(Math.Abs(x[i] - back[i]) <= bound * (1 + 1e-6), $"{format} n {n}: element {i}: {x[i]} → {back[i]}, bound {bound}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Dot_products_match_float64_over_the_dequantized_values(int n)
    {
        var w = Reference.Random(n, 3 * n + 1);
        var a = Reference.Random(n, 5 * n + 2).Select(v => 3 * v).ToArray();
        var aBlocks = Quantize(QuantFormat.Q8_0, a);
        var aBack = Dequantize(QuantFormat.Q8_0, aBlocks, n);
        foreach (var format in Formats)
        {
            var wBlocks = Quantize(format, w);
            var wBack = Dequantize(format, wBlocks, n);
            double expected = 0, magnitude = 0;
            for (int i = 0; i < n; i++)
            {
                expected += (double)wBack[i] * aBack[i];
                magnitude += Math.Abs((double)wBack[i] * aBack[i]);
            }
            float dot = QuantBlocks.Dot(format, wBlocks, aBlocks);
            Assert.True(Math.Abs(dot - expected) <= 1e-6 * magnitude + 1e-7, $"{format} n {n}: {dot} vs {expected}");
        }
    }

    [Fact]
    public void Bad_rows_are_refused_naming_the_argument_and_nothing_allocates()
    {
        foreach (var format in Formats)
        {
            Assert.Equal("values", Assert.Throws<ArgumentException>(() => QuantBlocks.Quantize(format, new float[33], new byte[100])).ParamName);
            Assert.Equal("blocks", Assert.Throws<ArgumentException>(() => QuantBlocks.Quantize(format, new float[32], new byte[3])).ParamName);
            Assert.Equal("blocks", Assert.Throws<ArgumentException>(() => QuantBlocks.Dequantize(format, new byte[3], new float[32])).ParamName);
            Assert.Equal("weights", Assert.Throws<ArgumentException>(() => QuantBlocks.Dot(format, new byte[5], new byte[34])).ParamName);
            Assert.Equal("activations", Assert.Throws<ArgumentException>(() =>
                QuantBlocks.Dot(format, new byte[QuantBlocks.BlockBytes(format) * 2], new byte[34])).ParamName);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => QuantBlocks.BlockBytes((QuantFormat)7));
        var x = Reference.Random(256, 9);
        var q8 = new byte[QuantBlocks.RowBytes(QuantFormat.Q8_0, 256)];
        var q4 = new byte[QuantBlocks.RowBytes(QuantFormat.Q4_0, 256)];
        var back = new float[256];
        QuantBlocks.Quantize(QuantFormat.Q8_0, x, q8);
        QuantBlocks.Quantize(QuantFormat.Q4_0, x, q4);
        QuantBlocks.Dot(QuantFormat.Q4_0, q4, q8);
        long before = GC.GetAllocatedBytesForCurrentThread();
        QuantBlocks.Quantize(QuantFormat.Q8_0, x, q8);
        QuantBlocks.Quantize(QuantFormat.Q4_0, x, q4);
        QuantBlocks.Dequantize(QuantFormat.Q4_0, q4, back);
        QuantBlocks.Dot(QuantFormat.Q8_0, q8, q8);
        QuantBlocks.Dot(QuantFormat.Q4_0, q4, q8);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}

public sealed class HalfConversionTests
{
    [Fact]
    public void Every_finite_half_converts_exactly()
    {
        for (int bits = 0; bits < 0x10000; bits++)
        {
            var h = BitConverter.UInt16BitsToHalf((ushort)bits);
            if (!Half.IsFinite(h)) continue;
            Assert.Equal(BitConverter.SingleToUInt32Bits((float)h), BitConverter.SingleToUInt32Bits(LoraRuntime.Quantization.WeightRows.HalfToSingle((ushort)bits)));
        }
    }
}

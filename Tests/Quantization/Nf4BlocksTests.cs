using LoraRuntime.Quantization;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Quantization;

/// <summary>
/// bitsandbytes' NF4: the code book and the decision points of its quantization kernel (transcribed from its source;
/// bitsandbytes itself cannot be installed here, so they are checked for their defining properties),
/// nearest-code quantization, high-nibble-first packing, and dequantization as code·absmax in float32.
/// </summary>
public sealed class Nf4BlocksTests
{
    [Fact]
    public void The_code_book_ascends_from_minus_one_to_one_and_the_thresholds_are_the_kernels_midpoints()
    {
        var code = Nf4Blocks.CodeBook.ToArray();
        Assert.Equal(16, code.Length);
        Assert.Equal(-1f, code[0]);
        Assert.Equal(0f, code[7]);
        Assert.Equal(1f, code[15]);
        Assert.True(code.Zip(code.Skip(1)).All(p => p.First < p.Second));
        // The comparisons of bitsandbytes' dQuantizeNF4 (its kernel's literals), in ascending order.
        float[] published =
        [
            -0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f, -0.33967943489551544f, -0.23460740596055984f,
            -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f, 0.1202552504837513f, 0.2035212516784668f,
            0.2920137718319893f, 0.3893125355243683f, 0.5016634166240692f, 0.6427869200706482f, 0.8614784181118011f,
        ];
        Assert.Equal(published, Nf4Blocks.Thresholds.ToArray());
        // Each is the midpoint of its neighbours, to within a float32 step.
        for (int i = 0; i < 15; i++)
        {
            double mid = ((double)code[i] + code[i + 1]) / 2;
            Assert.True(Math.Abs(published[i] - mid) <= Math.Abs(mid) * 1.2e-7, $"threshold {i}: {published[i]} vs {mid}");
        }
    }

    [Fact]
    public void Weights_quantize_to_the_nearest_code_pack_high_nibble_first_and_dequantize_as_code_times_absmax()
    {
        const int n = 256;
        var x = Reference.Random(n, 12).Select((v, i) => v * (1 + i / 64)).ToArray();
        var (bytes, blocks) = Nf4Blocks.Sizes(n);
        var packed = new byte[bytes];
        var absmax = new float[blocks];
        Nf4Blocks.Quantize(x, packed, absmax);
        var back = new float[n];
        Nf4Blocks.Dequantize(packed, absmax, back);
        var code = Nf4Blocks.CodeBook.ToArray();
        for (int b = 0; b < blocks; b++)
        {
            float max = x.Skip(b * 64).Take(64).Max(Math.Abs);
            Assert.Equal(max, absmax[b]);
            for (int i = b * 64; i < b * 64 + 64; i++)
            {
                int q = (i % 2 == 0 ? packed[i / 2] >> 4 : packed[i / 2] & 0x0F);
                Assert.Equal(code[q] * absmax[b], back[i]); // bit for bit: one float32 product
                // The nearest code value to x / absmax (ties aside).
                double normalized = x[i] / (double)max;
                double best = code.Min(c => Math.Abs(c - normalized));
                Assert.True(Math.Abs(code[q] - normalized) <= best + 1e-6, $"element {i}: {normalized} → code {q} ({code[q]})");
            }
        }
        // The block's largest weight comes back exactly, with its sign.
        int argmax = Enumerable.Range(0, 64).MaxBy(i => Math.Abs(x[i]));
        Assert.Equal(x[argmax], back[argmax]);
        Assert.Throws<ArgumentException>(() => Nf4Blocks.Sizes(65));
        Assert.Equal("absmax", Assert.Throws<ArgumentException>(() => Nf4Blocks.Quantize(x, packed, new float[1])).ParamName);
        Assert.Equal("packed", Assert.Throws<ArgumentException>(() => Nf4Blocks.Dequantize(new byte[3], absmax, back)).ParamName);
        long before = GC.GetAllocatedBytesForCurrentThread();
        Nf4Blocks.Quantize(x, packed, absmax);
        Nf4Blocks.Dequantize(packed, absmax, back);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}

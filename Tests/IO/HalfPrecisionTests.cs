using System.Runtime.InteropServices;
using LoraRuntime.IO;
using Xunit;

namespace LoraRuntime.Tests.IO;

/// <summary>
/// BF16 and F16 through a file: float32 bits in, the 16-bit patterns worked out by hand (round to nearest, ties to
/// even; overflow to infinity; NaN kept quiet with its sign; subnormals), and the exact float32 each reads back as.
/// </summary>
public sealed class HalfPrecisionTests : IDisposable
{
    private readonly SafetensorsFiles _files = new();

    public void Dispose() => _files.Dispose();

    /// <summary>(float32 bits written, bfloat16 bits stored).</summary>
    private static readonly (uint Float, ushort Stored)[] BFloat16Cases =
    [
        (0x3F800000, 0x3F80), // 1
        (0x3F808000, 0x3F80), // 1 + 2^-8: a tie, to the even 0x3F80
        (0x3F818000, 0x3F82), // a tie between 0x3F81 and 0x3F82, to the even one
        (0x3F808001, 0x3F81), // just above the tie
        (0x3F807FFF, 0x3F80), // just below the tie
        (0xBF808001, 0xBF81), // the same, negative
        (0x7F7FFFFF, 0x7F80), // the largest float rounds up to infinity
        (0x7F7F7FFF, 0x7F7F), // below the tie it stays finite
        (0x7F800000, 0x7F80), // +inf
        (0xFF800000, 0xFF80), // -inf
        (0x7FC00000, 0x7FC0), // quiet NaN
        (0x7F800001, 0x7FC0), // a NaN whose payload is all in the dropped half stays NaN (not inf)
        (0xFF800001, 0xFFC0), // with its sign
        (0x7FFFFFFF, 0x7FFF), // the top payload bits survive
        (0x00000000, 0x0000), // +0
        (0x80000000, 0x8000), // -0
        (0x00010000, 0x0001), // the smallest bfloat16 subnormal
        (0x00008000, 0x0000), // a subnormal tie, to the even 0
        (0x00018000, 0x0002), // a subnormal tie, to the even 2
        (0x007FFFFF, 0x0080), // the largest float subnormal rounds up to the smallest normal
    ];

    /// <summary>(float32 bits written, IEEE half bits stored).</summary>
    private static readonly (uint Float, ushort Stored)[] Float16Cases =
    [
        (0x3F800000, 0x3C00), // 1
        (0x477FE000, 0x7BFF), // 65504, the largest half
        (0x477FEF00, 0x7BFF), // 65519: below the tie with 65536
        (0x477FF000, 0x7C00), // 65520: the tie, to the even 65536 = overflow = inf
        (0x3F801000, 0x3C00), // 1 + 2^-11: a tie, to the even 0x3C00
        (0x3F803000, 0x3C02), // 1 + 3·2^-11: a tie, to the even 0x3C02
        (0x3F801001, 0x3C01), // just above the tie
        (0x33800000, 0x0001), // 2^-24, the smallest half subnormal
        (0x33000000, 0x0000), // 2^-25: a tie, to the even 0
        (0x33000001, 0x0001), // just above it
        (0x33C00000, 0x0002), // 1.5·2^-24: a tie, to the even 2
        (0x387FC000, 0x03FF), // 1023·2^-24, the largest half subnormal
        (0x38800000, 0x0400), // 2^-14, the smallest normal half
        (0x80000000, 0x8000), // -0
        (0x7F800000, 0x7C00), // +inf
        (0xFF800000, 0xFC00), // -inf
        (0x7FC00000, 0x7E00), // quiet NaN
        (0xFFC00000, 0xFE00), // negative quiet NaN
        (0x3EAAAAAB, 0x3555), // 1/3
    ];

    [Fact]
    public void BF16_rounds_to_nearest_even_and_reads_back_exactly() => RoundTrip(SafetensorsDType.BF16, BFloat16Cases, bits => (uint)bits << 16);

    [Fact]
    public void F16_rounds_to_nearest_even_and_reads_back_exactly() => RoundTrip(SafetensorsDType.F16, Float16Cases, HalfBitsToFloatBits);

    [Theory]
    [InlineData("BF16")]
    [InlineData("F16")]
    public void A_misaligned_16_bit_tensor_reads_through_the_staging_buffer(string dtype)
    {
        // A 1-byte U8 tensor first puts the 16-bit one at an odd address; 2500 elements cross several chunks.
        var dt = Enum.Parse<SafetensorsDType>(dtype);
        var random = new Random(5);
        var stored = new ushort[2500];
        for (int i = 0; i < stored.Length; i++) stored[i] = (ushort)random.Next(0, 0x7C00); // finite, both types
        byte[] data = [0x2A, .. MemoryMarshal.AsBytes(stored.AsSpan())];
        string header = """{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"h":{"dtype":"DTYPE","shape":[50,50],"data_offsets":[1,5001]}}""".Replace("DTYPE", dtype);
        string path = _files.Write(SafetensorsFiles.Layout(header.PadRight(header.Length + (8 - header.Length % 8) % 8), data));

        using var reader = SafetensorsReader.Open(path);
        var read = new float[2500];
        reader.ReadFloat32("h", read);
        for (int i = 0; i < stored.Length; i++)
        {
            uint expected = dt == SafetensorsDType.BF16 ? (uint)stored[i] << 16 : HalfBitsToFloatBits(stored[i]);
            Assert.Equal(expected, BitConverter.SingleToUInt32Bits(read[i]));
        }
    }

    private void RoundTrip(SafetensorsDType dtype, (uint Float, ushort Stored)[] cases, Func<ushort, uint> widen)
    {
        // Repeated so that both the vector body and the scalar tail of each conversion see every case.
        int repeats = 5;
        var values = new float[cases.Length * repeats];
        for (int i = 0; i < values.Length; i++) values[i] = BitConverter.UInt32BitsToSingle(cases[i % cases.Length].Float);
        var writer = new SafetensorsWriter(dtype);
        writer.Add("many", values, repeats, cases.Length);
        writer.Add("one", values.AsMemory(0, 1), 1);
        string path = _files.PathOf($"{dtype}.safetensors");
        writer.Save(path);

        byte[] file = File.ReadAllBytes(path);
        long dataStart = 8 + SafetensorsFiles.HeaderLength(file);
        var stored = MemoryMarshal.Cast<byte, ushort>(file.AsSpan((int)dataStart, 2 * values.Length));
        for (int i = 0; i < values.Length; i++)
        {
            var c = cases[i % cases.Length];
            Assert.True(c.Stored == stored[i], $"{dtype}: float bits {c.Float:X8} stored as {stored[i]:X4}, expected {c.Stored:X4}");
        }

        using var reader = SafetensorsReader.Open(path);
        Assert.Equal(dtype, reader["many"].DType);
        Assert.False(reader.TryGetFloat32Span("many", out _));
        var read = new float[values.Length];
        reader.ReadFloat32("many", read);
        for (int i = 0; i < values.Length; i++)
        {
            var c = cases[i % cases.Length];
            Assert.True(widen(c.Stored) == BitConverter.SingleToUInt32Bits(read[i]),
                $"{dtype}: {c.Stored:X4} read as float bits {BitConverter.SingleToUInt32Bits(read[i]):X8}, expected {widen(c.Stored):X8}");
        }
    }

    /// <summary>IEEE half bits to the float32 bits of the same value, by the definition of both formats.</summary>
    private static uint HalfBitsToFloatBits(ushort h)
    {
        uint sign = (uint)(h & 0x8000) << 16;
        int exponent = (h >> 10) & 0x1F;
        uint mantissa = (uint)h & 0x3FF;
        if (exponent == 0x1F) return sign | 0x7F800000 | (mantissa << 13); // inf or NaN (payload kept)
        if (exponent != 0) return sign | ((uint)(exponent - 15 + 127) << 23) | (mantissa << 13);
        if (mantissa == 0) return sign; // ±0
        // Subnormal: mantissa · 2^-24, exact in float32.
        return sign | BitConverter.SingleToUInt32Bits(mantissa * MathF.Pow(2, -24));
    }
}

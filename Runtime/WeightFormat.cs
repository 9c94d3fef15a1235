using LoraRuntime.Quantization;

namespace LoraRuntime;

/// <summary>How a frozen weight matrix is stored: float32, a 16-bit float, or a block-quantized format.</summary>
public enum WeightFormat
{
    /// <summary>32-bit IEEE floats: a plain parameter, not a <see cref="QuantizedMatrix"/>.</summary>
    F32,
    /// <summary>IEEE half precision, 2 bytes a weight.</summary>
    F16,
    /// <summary>bfloat16 (float32's upper half, rounded to nearest even), 2 bytes a weight.</summary>
    BF16,
    /// <summary>llama.cpp's Q8_0: blocks of 32 int8 with an F16 scale, 8.5 bits a weight.</summary>
    Q8_0,
    /// <summary>llama.cpp's Q4_0: blocks of 32 nibbles with an F16 scale, 4.5 bits a weight.</summary>
    Q4_0,
    /// <summary>bitsandbytes' NF4 (QLoRA): blocks of 64 code indices with a float32 absmax, 4.5 bits a weight.</summary>
    NF4,
    /// <summary>
    /// llama.cpp's Q4_K (read from GGUF files, not written): super-blocks of 256, F16 d and dmin, eight 6-bit scales and
    /// minimums, 4-bit values; 144 bytes, 4.5 bits a weight.
    /// </summary>
    Q4_K,
    /// <summary>llama.cpp's Q6_K (read from GGUF files, not written): super-blocks of 256, 6-bit values, sixteen int8 scales, an F16 d; 6.5625 bits a weight.</summary>
    Q6_K,
}

/// <summary>Sizes, names and parsing of <see cref="WeightFormat"/>.</summary>
public static class WeightFormats
{
    /// <summary>Bytes of one NF4 block as a <see cref="QuantizedMatrix"/> stores it: the float32 absmax, then 32 packed bytes.</summary>
    public const int Nf4BlockBytes = 4 + Nf4Blocks.BlockSize / 2;

    /// <summary>The values one block holds; a stored row is a whole number of blocks (1 for the float formats).</summary>
    public static int BlockValues(this WeightFormat format) => format switch
    {
        WeightFormat.F32 or WeightFormat.F16 or WeightFormat.BF16 => 1,
        WeightFormat.Q8_0 or WeightFormat.Q4_0 => QuantBlocks.BlockSize,
        WeightFormat.NF4 => Nf4Blocks.BlockSize,
        WeightFormat.Q4_K or WeightFormat.Q6_K => KQuantBlocks.BlockSize,
        _ => throw Unknown(format),
    };

    /// <summary>Bytes of one block (of <see cref="BlockValues"/> values).</summary>
    public static int BlockBytes(this WeightFormat format) => format switch
    {
        WeightFormat.F32 => 4,
        WeightFormat.F16 or WeightFormat.BF16 => 2,
        WeightFormat.Q8_0 => QuantBlocks.BlockBytes(QuantFormat.Q8_0),
        WeightFormat.Q4_0 => QuantBlocks.BlockBytes(QuantFormat.Q4_0),
        WeightFormat.NF4 => Nf4BlockBytes,
        WeightFormat.Q4_K => KQuantBlocks.Q4KBytes,
        WeightFormat.Q6_K => KQuantBlocks.Q6KBytes,
        _ => throw Unknown(format),
    };

    /// <summary>True for the formats the runtime writes (all but the K-quants, which it only reads).</summary>
    public static bool CanEncode(this WeightFormat format) => format is not (WeightFormat.Q4_K or WeightFormat.Q6_K);

    /// <summary>True when a row of <paramref name="columns"/> values is a whole number of blocks of <paramref name="format"/>.</summary>
    public static bool FitsRow(this WeightFormat format, long columns) => columns > 0 && columns % format.BlockValues() == 0;

    /// <summary>Bytes of one stored row of <paramref name="columns"/> values (a whole number of blocks).</summary>
    public static long RowBytes(this WeightFormat format, int columns)
    {
        if (!format.FitsRow(columns))
            throw new ArgumentException(
                $"columns: {format} rows hold whole blocks of {format.BlockValues()} values; got {columns}", nameof(columns));
        return (long)columns / format.BlockValues() * format.BlockBytes();
    }

    /// <summary>The lower-case name the command line uses: f32, f16, bf16, q8_0, q4_0, nf4.</summary>
    public static string Name(this WeightFormat format) => format switch
    {
        WeightFormat.F32 or WeightFormat.F16 or WeightFormat.BF16 or WeightFormat.Q8_0 or WeightFormat.Q4_0 or WeightFormat.NF4
            or WeightFormat.Q4_K or WeightFormat.Q6_K => format.ToString().ToLowerInvariant(),
        _ => throw Unknown(format),
    };

    /// <summary>Reads a name of <see cref="Name"/> (any case).</summary>
    public static WeightFormat Parse(string text, string argument = "format")
    {
        ArgumentNullException.ThrowIfNull(text);
        foreach (var format in Enum.GetValues<WeightFormat>())
            if (string.Equals(format.Name(), text.Trim(), StringComparison.OrdinalIgnoreCase)) return format;
        throw new ArgumentException($"{argument}: expected one of f32, f16, bf16, q8_0, q4_0, nf4 (q4_k, q6_k: read only); got '{text}'", argument);
    }

    private static ArgumentOutOfRangeException Unknown(WeightFormat format) =>
        new(nameof(format), format, $"format: expected a {nameof(WeightFormat)}; got {(int)format}");
}

namespace LoraRuntime.Layers;

/// <summary>
/// How a frozen base keeps its projection and embedding weights in memory: all in float32 (<see cref="Float32"/>, what
/// merging, compression and pre-training need), each in the type its file stores (<see cref="AsStored"/>: a BF16 or
/// F16 checkpoint stays 16-bit), or quantized to one format (<see cref="Quantized"/>). Norms, biases and position
/// tables stay float32 always, as do adapters, gradients and optimizer state.
/// </summary>
public sealed record WeightStorage
{
    private WeightStorage(WeightFormat? format, bool doubleQuantized = false) => (Format, DoubleQuantized) = (format, doubleQuantized);

    /// <summary>Every weight in float32.</summary>
    public static WeightStorage Float32 { get; } = new(WeightFormat.F32);

    /// <summary>Each weight in its file's type (F32, F16 or BF16).</summary>
    public static WeightStorage AsStored { get; } = new((WeightFormat?)null);

    /// <summary>
    /// Every projection and embedding weight in <paramref name="format"/> (F32 is <see cref="Float32"/>); with
    /// <paramref name="doubleQuantized"/> (NF4 only) the base a QLoRA run trains over, as transformers loads it with
    /// bitsandbytes' <c>bnb_4bit_use_double_quant</c>: the projections' NF4 blocks' absmax double-quantized, the token
    /// embedding and the head left in their file's type.
    /// </summary>
    public static WeightStorage Quantized(WeightFormat format, bool doubleQuantized = false)
    {
        if (!format.CanEncode())
            throw new ArgumentException($"format: {format} is read from GGUF files as it is, not made; quantize to q8_0, q4_0 or nf4", nameof(format));
        if (doubleQuantized && format != WeightFormat.NF4)
            throw new ArgumentException($"doubleQuantized: double quantization is bitsandbytes' for NF4 blocks; got format {format}", nameof(doubleQuantized));
        return format == WeightFormat.F32 ? Float32 : new(format, doubleQuantized);
    }

    /// <summary>
    /// The storage a command line names: a format (<see cref="WeightFormats.Parse"/>) or <c>nf4-dq</c>, NF4 with
    /// bitsandbytes' double quantization. Throws <see cref="ArgumentException"/> naming <paramref name="argument"/>.
    /// </summary>
    public static WeightStorage Parse(string text, string argument = "format")
    {
        ArgumentNullException.ThrowIfNull(text);
        if (string.Equals(text.Trim(), DoubleQuantizedName, StringComparison.OrdinalIgnoreCase)) return Quantized(WeightFormat.NF4, doubleQuantized: true);
        WeightFormat format;
        try
        {
            format = WeightFormats.Parse(text, argument);
        }
        catch (ArgumentException)
        {
            throw new ArgumentException($"{argument}: expected one of f32, f16, bf16, q8_0, q4_0, nf4, {DoubleQuantizedName}; got '{text}'", argument);
        }
        return Quantized(format);
    }

    private const string DoubleQuantizedName = "nf4-dq";

    /// <summary>
    /// True for the base QLoRA trains over (<c>nf4-dq</c>): the projections in NF4 with their blocks' absmax
    /// double-quantized as bitsandbytes does, the token embedding and the head as their file stores them.
    /// </summary>
    public bool DoubleQuantized { get; }

    /// <summary>
    /// What a base loads as when nothing is asked: <see cref="AsStored"/> on the CPU (a BF16 checkpoint's float32 values
    /// are exact, and it takes half the memory and streams half the bytes a decode step), <see cref="Float32"/> on other
    /// backends, whose products with stored weights are not fused yet.
    /// </summary>
    public static WeightStorage DefaultFor(Backend backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        return backend.Kind == DeviceKind.Cpu ? AsStored : Float32;
    }

    /// <summary>The one format asked for; null to keep each file's type.</summary>
    public WeightFormat? Format { get; }

    /// <summary>
    /// The format of a weight of <paramref name="columns"/> whose file holds <paramref name="stored"/>: the format asked
    /// for, or the file's own; a row that is not a whole number of the format's blocks keeps BF16 instead (as
    /// llama.cpp falls back for such tensors).
    /// </summary>
    public WeightFormat Resolve(int columns, WeightFormat stored)
    {
        var format = Format ?? stored;
        return format.FitsRow(columns) ? format : WeightFormat.BF16;
    }

    /// <summary>
    /// What a model's <see cref="ParameterSet.Storage"/> asks — each weight's format by parameter name and columns —
    /// given the type each weight's file holds (<paramref name="fileType"/>, F32 where the file has none); null when
    /// every weight is float32.
    /// </summary>
    /// <remarks>
    /// With <see cref="DoubleQuantized"/> the token embedding and the head keep the file's type, as transformers keeps
    /// them when it loads a base in 4 bits for QLoRA (only the projections become bitsandbytes' NF4).
    /// </remarks>
    internal Func<string, int, WeightFormat>? FormatsFor(Func<string, WeightFormat> fileType) =>
        this == Float32 ? null
        : (name, columns) => (DoubleQuantized && name is "wte.weight" or "lm_head.weight" ? AsStored : this).Resolve(columns, fileType(name));

    /// <inheritdoc/>
    public override string ToString() => DoubleQuantized ? DoubleQuantizedName : Format?.Name() ?? "as stored";
}

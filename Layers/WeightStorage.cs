namespace LoraRuntime.Layers;

/// <summary>
/// How a frozen base keeps its projection and embedding weights in memory: all in float32 (<see cref="Float32"/>, what
/// merging, compression and pre-training need), each in the type its file stores (<see cref="AsStored"/>: a BF16 or
/// F16 checkpoint stays 16-bit), or quantized to one format (<see cref="Quantized"/>). Norms, biases and position
/// tables stay float32 always, as do adapters, gradients and optimizer state.
/// </summary>
public sealed record WeightStorage
{
    private WeightStorage(WeightFormat? format) => Format = format;

    /// <summary>Every weight in float32.</summary>
    public static WeightStorage Float32 { get; } = new(WeightFormat.F32);

    /// <summary>Each weight in its file's type (F32, F16 or BF16).</summary>
    public static WeightStorage AsStored { get; } = new((WeightFormat?)null);

    /// <summary>Every projection and embedding weight in <paramref name="format"/> (F32 is <see cref="Float32"/>).</summary>
    public static WeightStorage Quantized(WeightFormat format)
    {
        if (!format.CanEncode())
            throw new ArgumentException($"format: {format} is read from GGUF files as it is, not made; quantize to q8_0, q4_0 or nf4", nameof(format));
        return format == WeightFormat.F32 ? Float32 : new(format);
    }

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
    internal Func<string, int, WeightFormat>? FormatsFor(Func<string, WeightFormat> fileType) =>
        this == Float32 ? null : (name, columns) => Resolve(columns, fileType(name));

    /// <inheritdoc/>
    public override string ToString() => Format?.Name() ?? "as stored";
}

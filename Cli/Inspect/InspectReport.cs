using System.Text.Json.Serialization;
using LoraRuntime.IO;

namespace LoraRuntime.Cli.Inspect;

/// <summary>One tensor of the file: name, stored dtype, shape, element count, bytes and <c>data_offsets</c>.</summary>
internal sealed record TensorRow(string Name, string Dtype, long[] Shape, long Parameters, long Bytes, long[] DataOffsets);

/// <summary>Everything <c>lora inspect</c> reports about a safetensors file.</summary>
internal sealed record InspectReport(
    string File, long FileBytes, int TensorCount, long TotalParameters, long TotalBytes,
    IReadOnlyDictionary<string, string> Metadata, IReadOnlyList<TensorRow> Tensors)
{
    /// <summary>The report of an open (and so already checked) file; reads no tensor data.</summary>
    public static InspectReport From(SafetensorsReader reader)
    {
        var rows = reader.Entries
            .Select(e => new TensorRow(e.Name, e.DType.ToString(), [.. e.Shape], e.ElementCount, e.ByteLength, [e.DataBegin, e.DataEnd]))
            .ToArray();
        var metadata = reader.Metadata.OrderBy(m => m.Key, StringComparer.Ordinal).ToDictionary(StringComparer.Ordinal);
        return new InspectReport(reader.Path, reader.FileLength, rows.Length, rows.Sum(r => r.Parameters), rows.Sum(r => r.Bytes),
            metadata, rows);
    }
}

/// <summary>Source-generated JSON for <see cref="InspectReport"/>.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true)]
[JsonSerializable(typeof(InspectReport))]
internal sealed partial class InspectJsonContext : JsonSerializerContext;

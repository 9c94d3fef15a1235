using System.Buffers.Binary;
using System.Text;

namespace LoraRuntime.IO;

/// <summary>
/// Writes a GGUF file (version 3): metadata in the order added, then the tensors' descriptions and their data, each
/// tensor at a multiple of the alignment (32, or general.alignment when added). The file is written atomically.
/// </summary>
public sealed class GgufWriter
{
    private readonly List<(string Key, GgufValue Value)> _metadata = [];
    private readonly List<(string Name, GgmlType Type, long[] Dims, byte[] Data)> _tensors = [];
    private readonly HashSet<string> _keys = new(StringComparer.Ordinal), _names = new(StringComparer.Ordinal);

    /// <summary>Adds a metadata entry (a unique key); arrays are <see cref="GgufValue"/>s with an element type.</summary>
    public void Add(string key, GgufValue value)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        ArgumentNullException.ThrowIfNull(value);
        if (!_keys.Add(key)) throw new ArgumentException($"key: '{key}' was added already", nameof(key));
        _metadata.Add((key, value));
    }

    /// <summary>Adds a tensor: its type, its dimensions as ggml lists them (columns first), and its bytes in that type's layout.</summary>
    public void AddTensor(string name, GgmlType type, long[] dimensions, ReadOnlySpan<byte> data)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(dimensions);
        if (!GgmlTypes.TryGetBlock(type, out int values, out int bytes)) throw new ArgumentException($"type: {type} has no known layout", nameof(type));
        if (dimensions.Length is < 1 or > 4 || dimensions.Any(d => d < 1))
            throw new ArgumentException($"dimensions: expected 1 to 4 dimensions ≥ 1; got [{string.Join(", ", dimensions)}]", nameof(dimensions));
        if (dimensions[0] % values != 0)
            throw new ArgumentException($"dimensions: the first ({dimensions[0]}) must be whole {values}-value blocks of {type}", nameof(dimensions));
        long expected = dimensions.Aggregate(1L, (p, d) => p * d) / values * bytes;
        if (data.Length != expected) throw new ArgumentException($"data: {type} [{string.Join(", ", dimensions)}] takes {expected} bytes; got {data.Length}", nameof(data));
        if (!_names.Add(name)) throw new ArgumentException($"name: a tensor '{name}' was added already", nameof(name));
        _tensors.Add((name, type, [.. dimensions], data.ToArray()));
    }

    /// <summary>Writes the file to <paramref name="path"/>, atomically.</summary>
    public void Save(string path)
    {
        int alignment = _metadata.FirstOrDefault(m => m.Key == "general.alignment").Value?.Value is uint a ? (int)a : GgufReader.DefaultAlignment;
        AtomicFile.Write(path, stream =>
        {
            using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
            w.Write(GgufReader.Magic);
            w.Write(3u);
            w.Write((ulong)_tensors.Count);
            w.Write((ulong)_metadata.Count);
            foreach (var (key, value) in _metadata)
            {
                WriteString(w, key);
                w.Write((uint)value.Type);
                WriteValue(w, value.Type, value.Value, value.ElementType);
            }
            long offset = 0;
            var offsets = new long[_tensors.Count];
            for (int i = 0; i < _tensors.Count; i++)
            {
                var (name, type, dims, data) = _tensors[i];
                WriteString(w, name);
                w.Write((uint)dims.Length);
                foreach (long d in dims) w.Write((ulong)d);
                w.Write((uint)type);
                w.Write((ulong)offset);
                offsets[i] = offset;
                offset = (offset + data.Length + alignment - 1) / alignment * alignment;
            }
            w.Flush();
            Pad(stream, alignment);
            long dataStart = stream.Position;
            for (int i = 0; i < _tensors.Count; i++)
            {
                stream.Position = dataStart + offsets[i];
                stream.Write(_tensors[i].Data);
            }
            Pad(stream, alignment);
        });
    }

    private static void Pad(Stream stream, int alignment)
    {
        long padded = (stream.Position + alignment - 1) / alignment * alignment;
        while (stream.Position < padded) stream.WriteByte(0);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void WriteValue(BinaryWriter w, GgufValueType type, object value, GgufValueType? element)
    {
        switch (type)
        {
            case GgufValueType.UInt8: w.Write(Convert.ToByte(value)); break;
            case GgufValueType.Int8: w.Write(Convert.ToSByte(value)); break;
            case GgufValueType.UInt16: w.Write(Convert.ToUInt16(value)); break;
            case GgufValueType.Int16: w.Write(Convert.ToInt16(value)); break;
            case GgufValueType.UInt32: w.Write(Convert.ToUInt32(value)); break;
            case GgufValueType.Int32: w.Write(Convert.ToInt32(value)); break;
            case GgufValueType.Float32: w.Write(Convert.ToSingle(value)); break;
            case GgufValueType.UInt64: w.Write(Convert.ToUInt64(value)); break;
            case GgufValueType.Int64: w.Write(Convert.ToInt64(value)); break;
            case GgufValueType.Float64: w.Write(Convert.ToDouble(value)); break;
            case GgufValueType.Bool: w.Write((byte)((bool)value ? 1 : 0)); break;
            case GgufValueType.String: WriteString(w, (string)value); break;
            case GgufValueType.Array:
                var items = (Array)value;
                var of = element ?? throw new ArgumentException("an array value needs its element type", nameof(element));
                w.Write((uint)of);
                w.Write((ulong)items.Length);
                foreach (object? item in items)
                    if (of == GgufValueType.Array)
                    {
                        var inner = item as GgufValue ?? throw new ArgumentException("an array of arrays holds GgufValues (each with its element type)", nameof(value));
                        WriteValue(w, GgufValueType.Array, inner.Value, inner.ElementType);
                    }
                    else WriteValue(w, of, item!, null);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(type), type, $"type: {type} is not a GGUF value type");
        }
    }
}

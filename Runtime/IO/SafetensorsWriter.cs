using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace LoraRuntime.IO;

/// <summary>
/// Collects named float tensors and metadata, then writes them as one safetensors file, atomically (see
/// <see cref="AtomicFile"/>): a failure leaves any earlier file at the path untouched. Values are stored as
/// <see cref="DType"/>: F32 as is, F16 or BF16 rounded to nearest even. The layout is the reference implementation's:
/// tensors sorted by name (UTF-8 byte order) and packed in that order, the header padded with spaces to a multiple of
/// 8 bytes so that every F32 tensor is 4-byte aligned in the file.
/// </summary>
public sealed class SafetensorsWriter
{
    private readonly List<Item> _items = [];
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _metadata = new(StringComparer.Ordinal);

    /// <summary>A writer that stores values as <paramref name="dtype"/>: F32 (exact), F16 or BF16.</summary>
    public SafetensorsWriter(SafetensorsDType dtype = SafetensorsDType.F32)
    {
        if (!dtype.IsFloat())
            throw new ArgumentOutOfRangeException(nameof(dtype), dtype, $"{nameof(dtype)}: expected F32, F16 or BF16; got {dtype.Name()}");
        DType = dtype;
    }

    /// <summary>The stored element type.</summary>
    public SafetensorsDType DType { get; }

    /// <summary>
    /// Adds an <see cref="LoraRuntime.DType.F32"/> tensor of any backend under <paramref name="name"/>. Its values are read
    /// when <see cref="Save"/> runs, so it must stay alive until then.
    /// </summary>
    public void Add(string name, Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.DType != LoraRuntime.DType.F32)
            throw new ArgumentException($"{nameof(tensor)}: expected an F32 tensor for {SafetensorsHeader.Quote(name)}; got {tensor}", nameof(tensor));
        tensor.ThrowIfDisposed();
        AddItem(new Item(name, tensor.Shape, tensor, default));
    }

    /// <summary>Adds <paramref name="values"/> shaped by <paramref name="dims"/> under <paramref name="name"/>; they are read when <see cref="Save"/> runs.</summary>
    public void Add(string name, ReadOnlyMemory<float> values, params ReadOnlySpan<int> dims)
    {
        ArgumentNullException.ThrowIfNull(name);
        var shape = new Shape(dims);
        if (values.Length != shape.Length)
            throw new ArgumentException($"{nameof(values)}: shape {shape} of {SafetensorsHeader.Quote(name)} needs {shape.Length} values; got {values.Length}", nameof(values));
        AddItem(new Item(name, shape, null, values));
    }

    /// <summary>
    /// Adds a tensor of any dtype as its little-endian bytes (<paramref name="data"/> holds exactly the elements of
    /// <paramref name="dims"/>), written as given: the uint8 blocks and statistics of a quantized checkpoint, say.
    /// </summary>
    public void AddRaw(string name, SafetensorsDType dtype, ReadOnlyMemory<byte> data, params ReadOnlySpan<int> dims)
    {
        ArgumentNullException.ThrowIfNull(name);
        var shape = new Shape(dims);
        if (dtype.Bits() % 8 != 0 || data.Length != shape.Length * (dtype.Bits() / 8))
            throw new ArgumentException(
                $"{nameof(data)}: shape {shape} of {dtype.Name()} {SafetensorsHeader.Quote(name)} needs {shape.Length * dtype.Bits() / 8} bytes; got {data.Length}", nameof(data));
        AddItem(new Item(name, shape, null, default, dtype, data));
    }

    /// <summary>Adds a <c>__metadata__</c> entry; keys are unique.</summary>
    public void AddMetadata(string key, string value)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(value);
        if (!_metadata.TryAdd(key, value))
            throw new ArgumentException($"{nameof(key)}: the metadata already has the key {SafetensorsHeader.Quote(key)}", nameof(key));
    }

    /// <summary>
    /// Writes the file to <paramref name="path"/> (creating its folder) through a temporary file that replaces it only
    /// once complete and flushed; when anything fails, the temporary file is removed and the old file stays.
    /// </summary>
    public void Save(string path)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors writing assumes a little-endian host");
        foreach (var item in _items) item.Tensor?.ThrowIfDisposed();
        var ordered = _items.ToArray();
        Array.Sort(ordered, static (a, b) => CompareUtf8(a.Name, b.Name));
        byte[] header = Header(ordered);
        AtomicFile.Write(path, stream =>
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
            stream.Write(length);
            stream.Write(header);
            foreach (var item in ordered) WriteData(stream, item);
        });
    }

    private void AddItem(Item item)
    {
        if (item.Name == "__metadata__")
            throw new ArgumentException("name: '__metadata__' is reserved for the metadata", "name");
        if (!_names.Add(item.Name))
            throw new ArgumentException($"name: a tensor called {SafetensorsHeader.Quote(item.Name)} was already added", "name");
        _items.Add(item);
    }

    /// <summary>The JSON header, padded with spaces to a multiple of 8 bytes.</summary>
    private byte[] Header(Item[] ordered)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            if (_metadata.Count > 0)
            {
                json.WriteStartObject("__metadata__");
                foreach (string key in _metadata.Keys.Order(Utf8Order.Instance)) json.WriteString(key, _metadata[key]);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var item in ordered)
            {
                var dtype = item.Raw ?? DType;
                int elementBytes = dtype.Bits() / 8;
                json.WriteStartObject(item.Name);
                json.WriteString("dtype", dtype.Name());
                json.WriteStartArray("shape");
                for (int i = 0; i < item.Shape.Rank; i++) json.WriteNumberValue(item.Shape[i]);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                offset += item.Shape.Length * elementBytes;
                json.WriteNumberValue(offset);
                json.WriteEndArray();
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        int padding = (8 - buffer.WrittenCount % 8) % 8;
        buffer.GetSpan(padding)[..padding].Fill((byte)' ');
        buffer.Advance(padding);
        return buffer.WrittenSpan.ToArray();
    }

    private void WriteData(Stream stream, Item item)
    {
        if (item.Raw is not null)
        {
            stream.Write(item.Bytes.Span);
            return;
        }
        float[]? staging = null;
        try
        {
            ReadOnlySpan<float> values;
            if (item.Tensor is not { } tensor) values = item.Values.Span;
            else if (tensor.Backend.IsHostMemory) values = tensor.AsSpan();
            else
            {
                int count = checked((int)tensor.Length);
                staging = ArrayPool<float>.Shared.Rent(count);
                tensor.CopyTo(staging.AsSpan(0, count));
                values = staging.AsSpan(0, count);
            }
            if (DType == SafetensorsDType.F32)
            {
                stream.Write(MemoryMarshal.AsBytes(values));
                return;
            }
            Span<ushort> chunk = stackalloc ushort[4096];
            for (int start = 0; start < values.Length; start += chunk.Length)
            {
                var part = values.Slice(start, Math.Min(chunk.Length, values.Length - start));
                if (DType == SafetensorsDType.F16) ElementConversion.SingleToFloat16(part, chunk);
                else ElementConversion.SingleToBFloat16(part, chunk);
                stream.Write(MemoryMarshal.AsBytes(chunk[..part.Length]));
            }
        }
        finally
        {
            if (staging is not null) ArrayPool<float>.Shared.Return(staging);
        }
    }

    /// <summary>Orders strings as their UTF-8 bytes (code point order), as the reference implementation sorts names.</summary>
    private static int CompareUtf8(string a, string b)
    {
        int i = 0, j = 0;
        while (i < a.Length && j < b.Length)
        {
            Rune.DecodeFromUtf16(a.AsSpan(i), out var ra, out int na);
            Rune.DecodeFromUtf16(b.AsSpan(j), out var rb, out int nb);
            if (ra != rb) return ra.Value.CompareTo(rb.Value);
            i += na;
            j += nb;
        }
        return (a.Length - i).CompareTo(b.Length - j);
    }

    private sealed class Utf8Order : IComparer<string>
    {
        public static readonly Utf8Order Instance = new();

        public int Compare(string? x, string? y) => CompareUtf8(x!, y!);
    }

    private readonly record struct Item(string Name, Shape Shape, Tensor? Tensor, ReadOnlyMemory<float> Values, SafetensorsDType? Raw = null,
        ReadOnlyMemory<byte> Bytes = default);
}

using System.Buffers.Binary;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace LoraRuntime.IO;

/// <summary>
/// Reads a GGUF file (versions 2 and 3): its metadata, its tensors' descriptions, and their bytes. The header is read
/// as strictly as <see cref="SafetensorsReader"/>'s: every count, string and array is checked against the bytes left in
/// the file before anything is allocated for it; keys and tensor names are unique, valid UTF-8; a tensor has 1 to 4
/// dimensions, each ≥ 1, a type whose block layout is known, a first dimension of whole blocks, an aligned offset, and
/// lies inside the data section without overlapping another; the alignment is a power of two. Anything else is an
/// <see cref="InvalidDataException"/> naming the file, the place and what was found.
/// </summary>
public sealed class GgufReader : IDisposable
{
    /// <summary>"GGUF" as a little-endian u32.</summary>
    public const uint Magic = 0x46554747;

    /// <summary>The alignment of tensor data when general.alignment does not say.</summary>
    public const int DefaultAlignment = 32;

    private const int MaxDepth = 4; // arrays of arrays: real files nest none

    private readonly SafeFileHandle _file;
    private readonly Dictionary<string, GgufTensorInfo> _byName;

    private GgufReader(string path, SafeFileHandle file, uint version, IReadOnlyDictionary<string, GgufValue> metadata, List<GgufTensorInfo> tensors,
        long dataStart, int alignment)
    {
        Path = path;
        _file = file;
        Version = version;
        Metadata = metadata;
        Tensors = tensors;
        DataStart = dataStart;
        Alignment = alignment;
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>The file read.</summary>
    public string Path { get; }

    /// <summary>The format version (2 or 3).</summary>
    public uint Version { get; }

    /// <summary>The metadata by key, in the file's order.</summary>
    public IReadOnlyDictionary<string, GgufValue> Metadata { get; }

    /// <summary>The tensors, in the file's order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    /// <summary>Where the data section starts in the file.</summary>
    public long DataStart { get; }

    /// <summary>The alignment of tensor data (general.alignment, else 32).</summary>
    public int Alignment { get; }

    /// <summary>The tensor called <paramref name="name"/>, if the file has one.</summary>
    public bool TryGetTensor(string name, out GgufTensorInfo tensor) => _byName.TryGetValue(name, out tensor!);

    /// <summary>Opens and checks <paramref name="path"/>; an <see cref="InvalidDataException"/> for anything malformed.</summary>
    public static GgufReader Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("GGUF reading assumes a little-endian host");
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such file", path);
        if (InputFiles.LengthOf(path) == 0) throw Bad(path, 0, "the file is empty, or not a regular file (a device, pipe or socket)");
        var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        try
        {
            long length = RandomAccess.GetLength(file);
            var header = new Cursor(path, file, length);
            uint magic = header.U32("the magic");
            if (magic != Magic) throw Bad(path, 0, $"the file does not start with \"GGUF\" (found 0x{magic:X8})");
            uint version = header.U32("the version");
            if (version is not (2 or 3)) throw Bad(path, 4, $"version {version} is not read; expected 2 or 3");
            ulong tensorCount = header.U64("the tensor count"), kvCount = header.U64("the metadata count");
            // Each metadata entry takes at least 12 bytes (an empty key and a u32 type) and each tensor 24: counts the
            // file cannot hold are refused before a list is made for them.
            if (kvCount > (ulong)(length / 12)) throw Bad(path, 16, $"{kvCount} metadata entries cannot fit in {length} bytes");
            if (tensorCount > (ulong)(length / 24)) throw Bad(path, 8, $"{tensorCount} tensors cannot fit in {length} bytes");
            var metadata = new Dictionary<string, GgufValue>((int)kvCount, StringComparer.Ordinal);
            for (ulong i = 0; i < kvCount; i++)
            {
                long at = header.Position;
                string key = header.String($"the key of metadata entry {i}");
                var type = (GgufValueType)header.U32($"the type of '{key}'");
                var value = header.Value(type, key, depth: 0);
                if (!metadata.TryAdd(key, value)) throw Bad(path, at, $"the metadata key '{key}' appears twice");
            }
            int alignment = DefaultAlignment;
            if (metadata.TryGetValue("general.alignment", out var a))
            {
                long requested = a.Value is uint u ? u : -1;
                if (requested < 1 || requested > 1 << 20 || (requested & (requested - 1)) != 0)
                    throw Bad(path, 0, $"general.alignment = {a.Value} ({a.Type}): expected a u32 power of two up to 2²⁰");
                alignment = (int)requested;
            }
            var raw = new List<(string Name, GgmlType Type, long[] Dims, ulong Offset, long At)>((int)tensorCount);
            var names = new HashSet<string>(StringComparer.Ordinal);
            for (ulong i = 0; i < tensorCount; i++)
            {
                long at = header.Position;
                string name = header.String($"the name of tensor {i}");
                if (!names.Add(name)) throw Bad(path, at, $"the tensor name '{name}' appears twice");
                uint rank = header.U32($"the rank of '{name}'");
                if (rank is < 1 or > 4) throw Bad(path, at, $"tensor '{name}' has {rank} dimensions; expected 1 to 4");
                var dims = new long[rank];
                for (int d = 0; d < rank; d++)
                {
                    ulong n = header.U64($"dimension {d} of '{name}'");
                    if (n is < 1 or > int.MaxValue) throw Bad(path, at, $"tensor '{name}' has dimension {d} = {n}; expected 1 to {int.MaxValue}");
                    dims[d] = (long)n;
                }
                var type = (GgmlType)header.U32($"the type of '{name}'");
                raw.Add((name, type, dims, header.U64($"the offset of '{name}'"), at));
            }
            long dataStart = (header.Position + alignment - 1) / alignment * alignment;
            if (dataStart > length) throw Bad(path, header.Position, $"the data section would start at {dataStart}, past the end of the {length}-byte file");
            var tensors = new List<GgufTensorInfo>(raw.Count);
            foreach (var (name, type, dims, offset, at) in raw)
                tensors.Add(Describe(path, name, type, dims, offset, at, alignment, length - dataStart));
            CheckOverlaps(path, tensors);
            return new GgufReader(path, file, version, metadata, tensors, dataStart, alignment);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private static GgufTensorInfo Describe(string path, string name, GgmlType type, long[] dims, ulong offset, long at, int alignment, long dataLength)
    {
        if (!GgmlTypes.TryGetBlock(type, out int blockValues, out int blockBytes))
            throw Bad(path, at, $"tensor '{name}' has type {(uint)type}, whose layout is not known (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K–Q8_K)");
        if (dims[0] % blockValues != 0)
            throw Bad(path, at, $"tensor '{name}' ({type}) has a first dimension of {dims[0]}, not a whole number of {blockValues}-value blocks");
        decimal elements = dims.Aggregate(1m, (p, d) => p * d);
        decimal bytes = elements / blockValues * blockBytes;
        if (offset % (ulong)alignment != 0) throw Bad(path, at, $"tensor '{name}' starts at offset {offset}, not a multiple of the alignment {alignment}");
        if (offset + bytes > dataLength)
            throw Bad(path, at, $"tensor '{name}' ({type}, [{string.Join(", ", dims)}], {bytes} bytes at offset {offset}) ends past the data section's {dataLength} bytes");
        return new GgufTensorInfo(name, type, dims, (long)offset, (long)bytes);
    }

    private static void CheckOverlaps(string path, List<GgufTensorInfo> tensors)
    {
        var sorted = tensors.OrderBy(t => t.Offset).ToList();
        for (int i = 1; i < sorted.Count; i++)
            if (sorted[i].Offset < sorted[i - 1].Offset + sorted[i - 1].Bytes)
                throw Bad(path, 0, $"tensors '{sorted[i - 1].Name}' and '{sorted[i].Name}' overlap in the data section");
    }

    /// <summary>The bytes of <paramref name="tensor"/> into <paramref name="destination"/> (exactly <see cref="GgufTensorInfo.Bytes"/> of them).</summary>
    public void ReadBytes(GgufTensorInfo tensor, Span<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (destination.Length != tensor.Bytes)
            throw new ArgumentException($"destination: expected {tensor.Bytes} bytes for '{tensor.Name}'; got {destination.Length}", nameof(destination));
        ReadBytes(tensor, 0, destination);
    }

    /// <summary>Bytes [<paramref name="start"/>, + destination's length) of <paramref name="tensor"/>: a piece of a large tensor.</summary>
    public void ReadBytes(GgufTensorInfo tensor, long start, Span<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (!_byName.TryGetValue(tensor.Name, out var own) || own != tensor)
            throw new ArgumentException($"tensor: '{tensor.Name}' is not a tensor of {Path}", nameof(tensor));
        if (start < 0 || start + destination.Length > tensor.Bytes)
            throw new ArgumentOutOfRangeException(nameof(start), start, $"start: bytes {start}..{start + destination.Length} lie outside '{tensor.Name}' ({tensor.Bytes} bytes)");
        long at = DataStart + tensor.Offset + start;
        while (!destination.IsEmpty)
        {
            int read = RandomAccess.Read(_file, destination, at);
            if (read == 0) throw Bad(Path, at, $"the file ended inside tensor '{tensor.Name}' (changed since it was opened?)");
            destination = destination[read..];
            at += read;
        }
    }

    /// <summary>Closes the file.</summary>
    public void Dispose() => _file.Dispose();

    private static InvalidDataException Bad(string path, long at, string what) => new($"{path}: not a valid GGUF file: at byte {at}: {what}");

    /// <summary>Reads the header field by field through a window of the file, each read checked against the bytes left.</summary>
    private sealed class Cursor(string path, SafeFileHandle file, long length)
    {
        private readonly byte[] _window = new byte[1 << 16];
        private long _windowStart;
        private int _windowLength;

        public long Position { get; private set; }

        private ReadOnlySpan<byte> Take(int count, string what)
        {
            if (length - Position < count) throw Bad(path, Position, $"the file ends before {what} ({count} bytes needed, {length - Position} left)");
            if (Position < _windowStart || Position + count > _windowStart + _windowLength) Fill();
            var span = _window.AsSpan((int)(Position - _windowStart), count);
            Position += count;
            return span;
        }

        private void Fill()
        {
            _windowStart = Position;
            _windowLength = 0;
            int wanted = (int)Math.Min(_window.Length, length - Position);
            while (_windowLength < wanted)
            {
                int read = RandomAccess.Read(file, _window.AsSpan(_windowLength, wanted - _windowLength), _windowStart + _windowLength);
                if (read == 0) throw Bad(path, _windowStart + _windowLength, "the file ended early (changed while it was read?)");
                _windowLength += read;
            }
        }

        private byte[] Bytes(long count, string what)
        {
            var bytes = new byte[count];
            int done = 0;
            while (done < bytes.Length)
            {
                int n = (int)Math.Min(bytes.Length - done, _window.Length);
                Take(n, what).CopyTo(bytes.AsSpan(done));
                done += n;
            }
            return bytes;
        }

        public byte U8(string what) => Take(1, what)[0];
        public ushort U16(string what) => BinaryPrimitives.ReadUInt16LittleEndian(Take(2, what));
        public uint U32(string what) => BinaryPrimitives.ReadUInt32LittleEndian(Take(4, what));
        public ulong U64(string what) => BinaryPrimitives.ReadUInt64LittleEndian(Take(8, what));

        public string String(string what)
        {
            long at = Position;
            ulong count = U64(what);
            if (count > (ulong)(length - Position)) throw Bad(path, at, $"{what}: a string of {count} bytes, more than the {length - Position} left");
            var bytes = Bytes((long)count, what);
            try
            {
                return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
            }
            catch (DecoderFallbackException)
            {
                throw Bad(path, at, $"{what} is not valid UTF-8");
            }
        }

        public GgufValue Value(GgufValueType type, string key, int depth)
        {
            long at = Position;
            switch (type)
            {
                case GgufValueType.UInt8: return new(type, U8(key));
                case GgufValueType.Int8: return new(type, (sbyte)U8(key));
                case GgufValueType.UInt16: return new(type, U16(key));
                case GgufValueType.Int16: return new(type, (short)U16(key));
                case GgufValueType.UInt32: return new(type, U32(key));
                case GgufValueType.Int32: return new(type, (int)U32(key));
                case GgufValueType.Float32: return new(type, BitConverter.Int32BitsToSingle((int)U32(key)));
                case GgufValueType.UInt64: return new(type, U64(key));
                case GgufValueType.Int64: return new(type, (long)U64(key));
                case GgufValueType.Float64: return new(type, BitConverter.Int64BitsToDouble((long)U64(key)));
                case GgufValueType.Bool:
                    byte b = U8(key);
                    return b <= 1 ? new(type, b == 1) : throw Bad(path, at, $"'{key}': a bool of {b}; expected 0 or 1");
                case GgufValueType.String: return new(type, String(key));
                case GgufValueType.Array:
                    if (depth >= MaxDepth) throw Bad(path, at, $"'{key}': arrays nested more than {MaxDepth} deep");
                    var element = (GgufValueType)U32(key);
                    ulong count = U64(key);
                    int minimum = element switch
                    {
                        GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
                        GgufValueType.UInt16 or GgufValueType.Int16 => 2,
                        GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
                        GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 or GgufValueType.String => 8,
                        GgufValueType.Array => 12,
                        _ => throw Bad(path, at, $"'{key}': an array of element type {(uint)element}, which GGUF does not define"),
                    };
                    if (count > (ulong)((length - Position) / minimum))
                        throw Bad(path, at, $"'{key}': an array of {count} {element} values cannot fit in the {length - Position} bytes left");
                    if (element == GgufValueType.String)
                    {
                        var strings = new string[count];
                        for (ulong i = 0; i < count; i++) strings[i] = String($"'{key}'[{i}]");
                        return new(type, strings, element);
                    }
                    // Arrays of arrays keep each inner array's element type: their items are GgufValues.
                    var items = new object[count];
                    for (ulong i = 0; i < count; i++)
                    {
                        var item = Value(element, $"{key}[{i}]", depth + 1);
                        items[i] = element == GgufValueType.Array ? item : item.Value;
                    }
                    return new(type, items, element);
                default:
                    throw Bad(path, at, $"'{key}': value type {(uint)type}, which GGUF does not define");
            }
        }
    }
}

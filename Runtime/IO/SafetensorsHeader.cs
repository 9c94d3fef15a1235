using System.Buffers.Binary;
using System.Collections.Immutable;
using System.Collections.ObjectModel;
using System.Text;
using System.Text.Json;
using System.Text.Unicode;

namespace LoraRuntime.IO;

/// <summary>
/// Parses and checks a safetensors header (huggingface/safetensors, format version 1): 8 bytes of little-endian
/// header length N, N bytes of UTF-8 JSON that begins with '{' (optionally padded with spaces), then the data region.
/// Every number is checked against the file before it sizes anything, and the tensors must tile the data region
/// exactly: sorted by offset, each begins where the previous ended, the last ends at the end of the file.
/// </summary>
internal sealed class SafetensorsHeader
{
    /// <summary>The largest header accepted (the reference implementation's guard against parsing huge JSON).</summary>
    public const long MaxHeaderBytes = 100L << 20;

    /// <summary>The largest rank accepted; real tensors stay far below it, and it bounds the work per shape.</summary>
    public const int MaxRank = 64;

    private const string MetadataKey = "__metadata__";

    private SafetensorsHeader(long dataStart, SafetensorsEntry[] entries, Dictionary<string, SafetensorsEntry> byName,
        IReadOnlyDictionary<string, string> metadata)
    {
        DataStart = dataStart;
        Entries = entries;
        ByName = byName;
        Metadata = metadata;
    }

    /// <summary>The file offset of the data region: 8 + N.</summary>
    public long DataStart { get; }

    /// <summary>The tensors in file order (by data offset, then name).</summary>
    public SafetensorsEntry[] Entries { get; }

    /// <summary>The tensors by name.</summary>
    public Dictionary<string, SafetensorsEntry> ByName { get; }

    /// <summary>The <c>__metadata__</c> map; empty when the header has none.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>
    /// Checks the 8-byte prefix of a file of <paramref name="fileLength"/> bytes (at least 8) and returns the header
    /// length N: at most <see cref="MaxHeaderBytes"/> and inside the file.
    /// </summary>
    public static long ReadHeaderLength(string path, ReadOnlySpan<byte> prefix, long fileLength)
    {
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (n > MaxHeaderBytes)
            throw Bad(path, $"the header length is {n} bytes, above the {MaxHeaderBytes / (1 << 20)} MiB limit (a corrupt or hostile file)");
        if ((long)n > fileLength - 8)
            throw Bad(path, $"the header length is {n} bytes but only {fileLength - 8} bytes follow the 8-byte length (a truncated file?)");
        return (long)n;
    }

    /// <summary>Parses <paramref name="header"/> (the N bytes after the length) of a file whose data region has <paramref name="dataLength"/> bytes.</summary>
    public static SafetensorsHeader Parse(string path, ReadOnlySpan<byte> header, long dataLength)
    {
        if (header.IsEmpty || header[0] != (byte)'{')
            throw Bad(path, header.IsEmpty ? "the header is empty; expected a JSON object" : "the header does not begin with '{'; expected a JSON object");
        if (!Utf8.IsValid(header)) throw Bad(path, "the header is not valid UTF-8");

        int count = CountTensors(path, header);
        var entries = new SafetensorsEntry[count];
        var byName = new Dictionary<string, SafetensorsEntry>(count, StringComparer.Ordinal);
        Dictionary<string, string>? metadata = null;
        bool sawMetadata = false;
        var reader = new Utf8JsonReader(header);
        reader.Read(); // the '{' checked above
        int n = 0;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals(MetadataKey))
            {
                if (sawMetadata) throw Bad(path, $"the header has two {MetadataKey} keys");
                sawMetadata = true;
                reader.Read();
                metadata = ParseMetadata(path, ref reader);
                continue;
            }
            string name = ReadString(path, ref reader, "a tensor name");
            if (byName.ContainsKey(name)) throw Bad(path, $"tensor {Quote(name)} appears twice in the header");
            reader.Read();
            var entry = ParseTensor(path, name, ref reader, dataLength);
            entries[n++] = entry;
            byName.Add(name, entry);
        }
        CheckCoverage(path, entries, dataLength);
        return new SafetensorsHeader(8 + header.Length, entries, byName,
            metadata is null ? ReadOnlyDictionary<string, string>.Empty : metadata.AsReadOnly());
    }

    /// <summary>
    /// Validates the JSON syntax in one pass that allocates nothing and counts the tensors, so that the second pass
    /// sizes its arrays from what the header really holds.
    /// </summary>
    private static int CountTensors(string path, ReadOnlySpan<byte> header)
    {
        try
        {
            var reader = new Utf8JsonReader(header);
            reader.Read();
            int count = 0;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (!reader.ValueTextEquals(MetadataKey)) count++;
                reader.Skip();
            }
            while (reader.Read()) { } // throws on anything but whitespace after the object
            return count;
        }
        catch (JsonException e)
        {
            throw Bad(path, $"the header is not valid JSON: {e.Message}");
        }
    }

    private static Dictionary<string, string>? ParseMetadata(string path, ref Utf8JsonReader reader)
    {
        if (reader.TokenType == JsonTokenType.Null) return null;
        if (reader.TokenType != JsonTokenType.StartObject)
            throw Bad(path, $"{MetadataKey} is {Describe(reader.TokenType)}; expected an object of string values");
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            string key = ReadString(path, ref reader, "a " + MetadataKey + " key");
            reader.Read();
            if (reader.TokenType != JsonTokenType.String)
                throw Bad(path, $"{MetadataKey} value of {Quote(key)} is {Describe(reader.TokenType)}; every metadata value must be a string");
            string value = ReadString(path, ref reader, "a " + MetadataKey + " value");
            if (!map.TryAdd(key, value)) throw Bad(path, $"{MetadataKey} has the key {Quote(key)} twice");
        }
        return map;
    }

    // Messages are built only on failure: a valid header allocates its names, shapes and entries and nothing else.
    private static SafetensorsEntry ParseTensor(string path, string name, ref Utf8JsonReader reader, long dataLength)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
            throw Bad(path, $"{Tensor(name)} is {Describe(reader.TokenType)}; expected an object with dtype, shape and data_offsets");
        SafetensorsDType? dtype = null;
        Span<long> dims = stackalloc long[MaxRank];
        int rank = -1;
        long begin = -1, end = -1;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("dtype"u8))
            {
                if (dtype is not null) throw Bad(path, $"{Tensor(name)} has two dtype keys");
                reader.Read();
                dtype = ParseDType(path, name, ref reader);
            }
            else if (reader.ValueTextEquals("shape"u8))
            {
                if (rank >= 0) throw Bad(path, $"{Tensor(name)} has two shape keys");
                reader.Read();
                rank = ParseShape(path, name, ref reader, dims);
            }
            else if (reader.ValueTextEquals("data_offsets"u8))
            {
                if (begin >= 0) throw Bad(path, $"{Tensor(name)} has two data_offsets keys");
                reader.Read();
                (begin, end) = ParseOffsets(path, name, ref reader);
            }
            else
            {
                throw Bad(path, $"{Tensor(name)} has the unexpected key {Quote(ReadString(path, ref reader, "a key"))}; expected dtype, shape and data_offsets");
            }
        }
        if (dtype is null) throw Bad(path, $"{Tensor(name)} has no dtype");
        if (rank < 0) throw Bad(path, $"{Tensor(name)} has no shape");
        if (begin < 0) throw Bad(path, $"{Tensor(name)} has no data_offsets");

        var shape = dims[..rank];
        if (begin > end) throw Bad(path, $"{Tensor(name)}: data_offsets [{begin}, {end}] begin after they end");
        if (end > dataLength) throw Bad(path, $"{Tensor(name)}: data_offsets [{begin}, {end}] run past the end of the {dataLength}-byte data region");
        long bytes = ByteLength(path, name, dtype.Value, shape);
        if (bytes != end - begin)
            throw Bad(path, $"{Tensor(name)}: dtype {dtype.Value.Name()} and shape {Format(shape)} need {bytes} bytes but data_offsets [{begin}, {end}] hold {end - begin}");
        return new SafetensorsEntry(name, dtype.Value, rank == 0 ? ImmutableArray<long>.Empty : ImmutableArray.Create<long>(shape), begin, end);
    }

    private static SafetensorsDType ParseDType(string path, string name, ref Utf8JsonReader reader)
    {
        if (reader.TokenType != JsonTokenType.String)
            throw Bad(path, $"{Tensor(name)}: dtype is {Describe(reader.TokenType)}; expected a string such as \"F32\"");
        Span<byte> utf8 = stackalloc byte[16];
        try
        {
            if (SafetensorsDTypes.TryParse(utf8[..reader.CopyString(utf8)], out var dtype)) return dtype;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            // longer than any dtype name, or not valid Unicode: reported below
        }
        throw Bad(path, $"{Tensor(name)} has the unknown dtype {Quote(ReadString(path, ref reader, "a dtype"))}");
    }

    /// <summary>Reads the dimensions into <paramref name="dims"/>; returns the rank.</summary>
    private static int ParseShape(string path, string name, ref Utf8JsonReader reader, scoped Span<long> dims)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
            throw Bad(path, $"{Tensor(name)}: shape is {Describe(reader.TokenType)}; expected an array of non-negative integers");
        int rank = 0;
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (rank == MaxRank) throw Bad(path, $"{Tensor(name)}: shape has more than {MaxRank} dimensions");
            dims[rank] = ReadNonNegativeInteger(path, ref reader, name, "shape", rank);
            rank++;
        }
        return rank;
    }

    private static (long Begin, long End) ParseOffsets(string path, string name, ref Utf8JsonReader reader)
    {
        const string expected = "expected [begin, end], two non-negative integers";
        if (reader.TokenType != JsonTokenType.StartArray)
            throw Bad(path, $"{Tensor(name)}: data_offsets is {Describe(reader.TokenType)}; {expected}");
        Span<long> offsets = stackalloc long[2];
        int count = 0;
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (count == 2) throw Bad(path, $"{Tensor(name)}: data_offsets has more than two numbers; {expected}");
            offsets[count] = ReadNonNegativeInteger(path, ref reader, name, "data_offsets", count);
            count++;
        }
        if (count != 2) throw Bad(path, $"{Tensor(name)}: data_offsets has {count} {(count == 1 ? "number" : "numbers")}; {expected}");
        return (offsets[0], offsets[1]);
    }

    /// <summary>The current token as an integer in [0, 2^63); names it as <c>field[index]</c> of tensor <paramref name="name"/> when it is not.</summary>
    private static long ReadNonNegativeInteger(string path, ref Utf8JsonReader reader, string name, string field, int index)
    {
        if (reader.TokenType != JsonTokenType.Number)
            throw Bad(path, $"{Tensor(name)}: {field}[{index}] is {Describe(reader.TokenType)}; expected a non-negative integer");
        if (reader.TryGetInt64(out long value) && value >= 0) return value;
        var raw = reader.ValueSpan;
        string text = Encoding.UTF8.GetString(raw[..Math.Min(raw.Length, 40)]) + (raw.Length > 40 ? "…" : "");
        string problem = raw.IndexOfAny(".eE"u8) >= 0 ? "is not an integer"
            : raw[0] == (byte)'-' ? "is negative"
            : $"is above {long.MaxValue}";
        throw Bad(path, $"{Tensor(name)}: {field}[{index}] {problem}: {text}; expected a non-negative integer");
    }

    /// <summary>Bytes of <paramref name="shape"/> elements of <paramref name="dtype"/>, failing on 64-bit overflow or a partial byte.</summary>
    private static long ByteLength(string path, string name, SafetensorsDType dtype, ReadOnlySpan<long> shape)
    {
        long elements = 1;
        if (shape.Contains(0L)) elements = 0;
        else
        {
            foreach (long d in shape)
            {
                if (elements > long.MaxValue / d)
                    throw Bad(path, $"{Tensor(name)}: the element count of shape {Format(shape)} overflows 64 bits");
                elements *= d;
            }
        }
        int bits = dtype.Bits();
        if (elements > long.MaxValue / bits)
            throw Bad(path, $"{Tensor(name)}: the size of shape {Format(shape)} in {dtype.Name()} overflows 64 bits");
        long totalBits = elements * bits;
        if (totalBits % 8 != 0)
            throw Bad(path, $"{Tensor(name)}: {elements} elements of {dtype.Name()} do not fill a whole number of bytes");
        return totalBits / 8;
    }

    /// <summary>The format requires the tensors to index the whole data region, without holes or overlaps.</summary>
    private static void CheckCoverage(string path, SafetensorsEntry[] entries, long dataLength)
    {
        Array.Sort(entries, CompareByOffset);
        long covered = 0;
        SafetensorsEntry? previous = null;
        foreach (var e in entries)
        {
            if (e.DataBegin < covered)
                throw Bad(path, $"tensor {Quote(e.Name)} data_offsets [{e.DataBegin}, {e.DataEnd}] overlap tensor {Quote(previous!.Name)} [{previous.DataBegin}, {previous.DataEnd}]");
            if (e.DataBegin > covered)
                throw Bad(path, $"bytes [{covered}, {e.DataBegin}) of the data region, before tensor {Quote(e.Name)}, belong to no tensor; the tensors must cover the data region without holes");
            covered = e.DataEnd;
            previous = e;
        }
        if (covered != dataLength)
            throw Bad(path, $"bytes [{covered}, {dataLength}) at the end of the data region belong to no tensor; the tensors must cover the data region without holes");
    }

    private static int CompareByOffset(SafetensorsEntry a, SafetensorsEntry b)
    {
        int c = a.DataBegin.CompareTo(b.DataBegin);
        if (c == 0) c = a.DataEnd.CompareTo(b.DataEnd);
        return c != 0 ? c : string.CompareOrdinal(a.Name, b.Name);
    }

    /// <summary>The current string token, unescaped; an escaped lone surrogate is invalid data.</summary>
    private static string ReadString(string path, ref Utf8JsonReader reader, string what)
    {
        try
        {
            return reader.GetString() ?? "";
        }
        catch (InvalidOperationException e)
        {
            throw Bad(path, $"{what} is not valid Unicode: {e.Message}");
        }
    }

    private static string Describe(JsonTokenType token) => token switch
    {
        JsonTokenType.StartObject => "an object",
        JsonTokenType.StartArray => "an array",
        JsonTokenType.String => "a string",
        JsonTokenType.Number => "a number",
        JsonTokenType.True => "true",
        JsonTokenType.False => "false",
        JsonTokenType.Null => "null",
        _ => token.ToString(),
    };

    private static string Format(ReadOnlySpan<long> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";

    private static string Tensor(string name) => "tensor " + Quote(name);

    /// <summary>A name in quotes for a message, cut to a readable length.</summary>
    public static string Quote(string name) => name.Length <= 80 ? $"'{name}'" : $"'{name[..80]}…' ({name.Length} characters)";

    /// <summary>
    /// The exception for a file that breaks the format: "path: problem", on one line (control characters in names
    /// or paths are escaped) so that a command can print it as is.
    /// </summary>
    public static InvalidDataException Bad(string path, string problem)
    {
        string message = $"{path}: {problem}";
        if (!message.Any(char.IsControl)) return new InvalidDataException(message);
        var builder = new StringBuilder(message.Length + 16);
        foreach (char c in message)
        {
            if (char.IsControl(c)) builder.Append($"\\u{(int)c:x4}");
            else builder.Append(c);
        }
        return new InvalidDataException(builder.ToString());
    }
}

using System.Text.Json;
using LoraRuntime.IO;
using LoraRuntime.Quantization;

namespace LoraRuntime.Layers;

/// <summary>
/// One projection weight of a bitsandbytes 4-bit checkpoint: what transformers saves for a model loaded with
/// <c>load_in_4bit</c> (the "-bnb-4bit" models of the Hub). The weight W [out, in] is a uint8 tensor of packed NF4
/// indices (row-major, two a byte, the first in the high nibble), with companions named after it:
/// <c>.absmax</c> (float32 per block of 64, or uint8 with double quantization), <c>.quant_map</c> (the 16 NF4 values),
/// with double quantization <c>.nested_absmax</c> (float32 per block of absmax values) and <c>.nested_quant_map</c>
/// (bitsandbytes' 256-value dynamic map), and <c>.quant_state.bitsandbytes__nf4</c>, a JSON text (quant_type,
/// blocksize, dtype, shape, nested_blocksize, nested_offset) stored as uint8. Each block's absmax is dequantized as
/// bitsandbytes does, nested_quant_map[q]·nested_absmax[block] + nested_offset in float32, so the NF4 blocks this
/// gives are the base a QLoRA adapter was trained on: its weights are code[q]·absmax in float32, bit for bit what
/// bitsandbytes computes before it rounds them to its compute dtype. FP4 and block sizes other than 64 are refused.
/// </summary>
internal sealed class BitsAndBytesWeight
{
    private const string StateSuffix = ".quant_state.bitsandbytes__";
    private readonly SafetensorsReader _data;
    private readonly string _key;
    private readonly float[] _absmax;

    private BitsAndBytesWeight(SafetensorsReader data, string key, int rows, int columns, float[] absmax, IReadOnlyList<string> keys)
    {
        (_data, _key, Rows, Columns, _absmax, Keys) = (data, key, rows, columns, absmax, keys);
    }

    /// <summary>Out.</summary>
    public int Rows { get; }

    /// <summary>In.</summary>
    public int Columns { get; }

    /// <summary>Every tensor of the file this weight is made of (the weight and its companions).</summary>
    public IReadOnlyList<string> Keys { get; }

    /// <summary>True when <paramref name="key"/> is a bitsandbytes 4-bit weight (its quant_state companion is present, of any quant type).</summary>
    public static bool IsQuantized(Func<string, (SafetensorsReader Reader, SafetensorsEntry Entry)?> find, string key) =>
        find(key + StateSuffix + "nf4") is not null || find(key + StateSuffix + "fp4") is not null;

    /// <summary>
    /// Reads and checks the state of <paramref name="key"/>, expected to be W [<paramref name="rows"/>,
    /// <paramref name="columns"/>]; every tensor is looked up with <paramref name="find"/> (any shard). Throws
    /// <see cref="InvalidDataException"/> naming the tensor and what is wrong.
    /// </summary>
    public static BitsAndBytesWeight Open(Func<string, (SafetensorsReader Reader, SafetensorsEntry Entry)?> find, string key, int rows, int columns)
    {
        (SafetensorsReader Reader, SafetensorsEntry Entry) Need(string name) =>
            find(name) ?? throw new InvalidDataException($"bitsandbytes weight '{key}': the tensor '{name}' is missing");
        if (find(key + StateSuffix + "fp4") is { } fp4)
            throw new InvalidDataException($"{fp4.Reader.Path}: '{key}' is bitsandbytes FP4; only NF4 (bnb_4bit_quant_type \"nf4\", QLoRA's) is read");
        var (stateReader, stateEntry) = Need(key + StateSuffix + "nf4");
        string where = $"{stateReader.Path}: '{key}'";
        var state = ReadState(stateReader, stateEntry, where);
        string quantType = Text(state, "quant_type", where);
        int blockSize = Integer(state, "blocksize", where);
        if (quantType != "nf4") throw new InvalidDataException($"{where}: quant_type is '{quantType}'; expected nf4");
        if (blockSize != Nf4Blocks.BlockSize)
            throw new InvalidDataException($"{where}: NF4 blocks of {blockSize}; only bitsandbytes' default of {Nf4Blocks.BlockSize} is read");
        if (!state.TryGetProperty("shape", out var shape) || shape.ValueKind != JsonValueKind.Array || shape.GetArrayLength() != 2
            || !shape[0].TryGetInt32(out int stateRows) || !shape[1].TryGetInt32(out int stateColumns) || stateRows != rows || stateColumns != columns)
            throw new InvalidDataException($"{where}: the quant_state's shape is {(state.TryGetProperty("shape", out var s) ? s.GetRawText() : "missing")}; expected [{rows}, {columns}]");
        if (columns % Nf4Blocks.BlockSize != 0)
            throw new InvalidDataException($"{where}: rows of {columns} values are not whole blocks of {Nf4Blocks.BlockSize}; such a layer is not read");

        long count = (long)rows * columns, blocks = count / Nf4Blocks.BlockSize;
        var (dataReader, data) = Need(key);
        if (data.DType != SafetensorsDType.U8 || data.ElementCount != count / 2)
            throw new InvalidDataException($"{dataReader.Path}: '{key}' is {data.DType} with {data.ElementCount:N0} elements; expected U8 with {count / 2:N0} (two 4-bit values a byte)");

        var quantMap = FloatTensor(Need(key + ".quant_map"), 16, key + ".quant_map");
        if (!quantMap.AsSpan().SequenceEqual(Nf4Blocks.CodeBook))
            throw new InvalidDataException($"{where}: its quant_map is not bitsandbytes' NF4 table");

        var keys = new List<string> { key, key + ".quant_map", key + StateSuffix + "nf4", key + ".absmax" };
        var (absmaxReader, absmaxEntry) = Need(key + ".absmax");
        float[] absmax;
        // Double quantization is the quant_state's nested_* entries (bnb_4bit_use_double_quant); then the tensors must be there.
        if (!state.TryGetProperty("nested_blocksize", out _))
        {
            absmax = FloatTensor((absmaxReader, absmaxEntry), blocks, key + ".absmax");
        }
        else
        {
            // Double quantization: absmax − offset quantized to 8 bits with bitsandbytes' dynamic map, in blocks.
            int nestedBlock = Integer(state, "nested_blocksize", where);
            if (nestedBlock < 1) throw new InvalidDataException($"{where}: nested_blocksize {nestedBlock}; expected ≥ 1");
            if (!state.TryGetProperty("nested_offset", out var offsetValue) || !offsetValue.TryGetDouble(out double offsetDouble) || !double.IsFinite(offsetDouble))
                throw new InvalidDataException($"{where}: the quant_state has no finite nested_offset");
            float offset = (float)offsetDouble; // written from a float32 (offset.item()), so exact
            var nestedAbsmax = FloatTensor(Need(key + ".nested_absmax"), (blocks + nestedBlock - 1) / nestedBlock, key + ".nested_absmax");
            var nestedMap = FloatTensor(Need(key + ".nested_quant_map"), 256, key + ".nested_quant_map");
            if (absmaxEntry.DType != SafetensorsDType.U8 || absmaxEntry.ElementCount != blocks)
                throw new InvalidDataException($"{absmaxReader.Path}: '{key}.absmax' is {absmaxEntry.DType} with {absmaxEntry.ElementCount:N0} elements; expected U8 with {blocks:N0} (one a block of {Nf4Blocks.BlockSize})");
            var quantized = new byte[blocks];
            absmaxReader.ReadBytes(key + ".absmax", 0, quantized);
            absmax = new float[blocks];
            for (long b = 0; b < blocks; b++)
            {
                float value = nestedMap[quantized[b]] * nestedAbsmax[b / nestedBlock];
                absmax[b] = value + offset;
            }
            keys.AddRange([key + ".nested_absmax", key + ".nested_quant_map"]);
        }
        for (long b = 0; b < blocks; b++)
            if (!float.IsFinite(absmax[b]))
                throw new InvalidDataException($"{where}: block {b:N0}'s absmax is {absmax[b]}; the checkpoint is corrupt");
        return new BitsAndBytesWeight(dataReader, key, rows, columns, absmax, keys);
    }

    /// <summary>
    /// Rows [<paramref name="firstRow"/>, + count) as our NF4 rows (each block the float32 absmax, then its 32 bytes):
    /// <paramref name="encoded"/> holds count × <see cref="WeightFormats.RowBytes"/>(NF4, in) bytes.
    /// </summary>
    public void ReadBlocks(int firstRow, int count, Span<byte> encoded)
    {
        int blocksPerRow = Columns / Nf4Blocks.BlockSize, packed = Nf4Blocks.BlockSize / 2;
        if (firstRow < 0 || count < 0 || firstRow + count > Rows || encoded.Length != count * blocksPerRow * WeightFormats.Nf4BlockBytes)
            throw new ArgumentException($"encoded: rows {firstRow}..{firstRow + count} of {Rows} need {count * blocksPerRow * WeightFormats.Nf4BlockBytes} bytes; got {encoded.Length}", nameof(encoded));
        var bytes = new byte[count * blocksPerRow * packed];
        _data.ReadBytes(_key, (long)firstRow * Columns / 2, bytes);
        for (int b = 0; b < count * blocksPerRow; b++)
        {
            var block = encoded.Slice(b * WeightFormats.Nf4BlockBytes, WeightFormats.Nf4BlockBytes);
            BitConverter.TryWriteBytes(block, _absmax[(long)firstRow * blocksPerRow + b]);
            bytes.AsSpan(b * packed, packed).CopyTo(block[4..]);
        }
    }

    /// <summary>Rows [<paramref name="firstRow"/>, + count) dequantized to float32 (code[q]·absmax) into <paramref name="values"/>.</summary>
    public void ReadFloat32(int firstRow, int count, Span<float> values)
    {
        var encoded = new byte[count * (Columns / Nf4Blocks.BlockSize) * WeightFormats.Nf4BlockBytes];
        ReadBlocks(firstRow, count, encoded);
        WeightRows.Decode(WeightFormat.NF4, encoded, values);
    }

    private static JsonElement ReadState(SafetensorsReader reader, SafetensorsEntry entry, string where)
    {
        if (entry.DType != SafetensorsDType.U8 || entry.ElementCount > 1 << 20)
            throw new InvalidDataException($"{where}: its quant_state is {entry.DType} with {entry.ElementCount:N0} elements; expected a short U8 JSON text");
        var bytes = new byte[entry.ElementCount];
        reader.ReadBytes(entry.Name, 0, bytes);
        try
        {
            using var doc = JsonDocument.Parse(bytes);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new JsonException("not an object");
            return doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{where}: its quant_state is not a JSON object: {e.Message}", e);
        }
    }

    private static string Text(JsonElement state, string name, string where) =>
        state.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString()!
            : throw new InvalidDataException($"{where}: the quant_state has no text '{name}'");

    private static int Integer(JsonElement state, string name, string where) =>
        state.TryGetProperty(name, out var value) && value.TryGetInt32(out int n) ? n
            : throw new InvalidDataException($"{where}: the quant_state has no integer '{name}'");

    private static float[] FloatTensor((SafetensorsReader Reader, SafetensorsEntry Entry) found, long count, string name)
    {
        var (reader, entry) = found;
        if (entry.DType != SafetensorsDType.F32 || entry.ElementCount != count)
            throw new InvalidDataException($"{reader.Path}: '{name}' is {entry.DType} with {entry.ElementCount:N0} elements; expected F32 with {count:N0}");
        var values = new float[count];
        reader.ReadFloat32(name, values);
        return values;
    }
}

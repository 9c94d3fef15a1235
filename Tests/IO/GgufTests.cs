using System.Buffers.Binary;
using System.Text;
using LoraRuntime.IO;
using LoraRuntime.Quantization;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.IO;

/// <summary>
/// GGUF files: the writer's bytes against a file laid out by hand from the format's description, round trips of every
/// metadata type and tensor type, a table of malformed headers each refused naming what is wrong, and a fuzz of
/// corrupted files that must open or be refused with an <see cref="InvalidDataException"/>, nothing else.
/// </summary>
public sealed class GgufTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "lora-gguf-" + Guid.NewGuid().ToString("N"));

    public GgufTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    /// <summary>A GGUF v3 file laid out field by field: one metadata entry (general.name = "t"), one F32 tensor [2] at offset 0.</summary>
    private static byte[] ByHand()
    {
        var bytes = new List<byte>();
        void U32(uint v) => bytes.AddRange(BitConverter.GetBytes(v));
        void U64(ulong v) => bytes.AddRange(BitConverter.GetBytes(v));
        void Str(string s)
        {
            U64((ulong)Encoding.UTF8.GetByteCount(s));
            bytes.AddRange(Encoding.UTF8.GetBytes(s));
        }
        bytes.AddRange("GGUF"u8.ToArray());
        U32(3); U64(1); U64(1);
        Str("general.name"); U32(8); Str("t");
        Str("w"); U32(1); U64(2); U32(0); U64(0);
        while (bytes.Count % 32 != 0) bytes.Add(0);
        bytes.AddRange(BitConverter.GetBytes(1.5f));
        bytes.AddRange(BitConverter.GetBytes(-2f));
        while (bytes.Count % 32 != 0) bytes.Add(0);
        return [.. bytes];
    }

    [Fact]
    public void The_writer_lays_a_file_out_as_the_format_says()
    {
        var writer = new GgufWriter();
        writer.Add("general.name", new GgufValue(GgufValueType.String, "t"));
        writer.AddTensor("w", GgmlType.F32, [2], [.. BitConverter.GetBytes(1.5f), .. BitConverter.GetBytes(-2f)]);
        writer.Save(PathOf("w.gguf"));
        Assert.Equal(ByHand(), File.ReadAllBytes(PathOf("w.gguf")));
        using var reader = GgufReader.Open(PathOf("w.gguf"));
        Assert.Equal("t", reader.Metadata["general.name"].AsString());
        Assert.True(reader.TryGetTensor("w", out var w));
        var data = new byte[w.Bytes];
        reader.ReadBytes(w, data);
        Assert.Equal(1.5f, BitConverter.ToSingle(data, 0));
    }

    [Theory]
    [InlineData(null)]
    [InlineData(64u)]
    public void Every_metadata_type_and_tensor_type_round_trips(uint? alignment)
    {
        var writer = new GgufWriter();
        var values = new (string, GgufValue)[]
        {
            ("u8", new(GgufValueType.UInt8, (byte)200)), ("i8", new(GgufValueType.Int8, (sbyte)-100)), ("u16", new(GgufValueType.UInt16, (ushort)60000)),
            ("i16", new(GgufValueType.Int16, (short)-30000)), ("u32", new(GgufValueType.UInt32, 4000000000u)), ("i32", new(GgufValueType.Int32, -2000000000)),
            ("f32", new(GgufValueType.Float32, 0.125f)), ("bool", new(GgufValueType.Bool, true)), ("str", new(GgufValueType.String, "ünïcödé 🙂")),
            ("u64", new(GgufValueType.UInt64, ulong.MaxValue)), ("i64", new(GgufValueType.Int64, long.MinValue)), ("f64", new(GgufValueType.Float64, Math.PI)),
            ("tokens", new(GgufValueType.Array, new[] { "<s>", "a", "" }, GgufValueType.String)),
            ("scores", new(GgufValueType.Array, new object[] { 1.5f, -2f }, GgufValueType.Float32)),
            ("nested", new(GgufValueType.Array, new object[]
            {
                new GgufValue(GgufValueType.Array, new object[] { 1, 2 }, GgufValueType.Int32), new GgufValue(GgufValueType.Array, new object[] { 3 }, GgufValueType.Int32),
            }, GgufValueType.Array)),
        };
        if (alignment is uint a) writer.Add("general.alignment", new GgufValue(GgufValueType.UInt32, a));
        foreach (var (key, value) in values) writer.Add(key, value);
        var random = new Random(3);
        var tensors = new List<(string, GgmlType, long[], byte[])>();
        var f32 = Reference.Random(96, 1);
        var q8 = new byte[QuantBlocks.RowBytes(QuantFormat.Q8_0, 96)];
        QuantBlocks.Quantize(QuantFormat.Q8_0, f32, q8);
        tensors.Add(("f32", GgmlType.F32, [96], f32.SelectMany(BitConverter.GetBytes).ToArray()));
        tensors.Add(("q8", GgmlType.Q8_0, [96], q8));
        foreach (var (name, type, dims) in new (string, GgmlType, long[])[]
            { ("f16", GgmlType.F16, [3, 5]), ("bf16", GgmlType.BF16, [7]), ("q4", GgmlType.Q4_0, [64, 2]), ("q4k", GgmlType.Q4_K, [256]), ("q6k", GgmlType.Q6_K, [512, 1, 2]) })
        {
            GgmlTypes.TryGetBlock(type, out int per, out int size);
            var bytes = new byte[dims.Aggregate(1L, (p, d) => p * d) / per * size];
            random.NextBytes(bytes);
            tensors.Add((name, type, dims, bytes));
        }
        foreach (var (name, type, dims, bytes) in tensors) writer.AddTensor(name, type, dims, bytes);
        writer.Save(PathOf("all.gguf"));
        using var reader = GgufReader.Open(PathOf("all.gguf"));
        Assert.Equal(3u, reader.Version);
        Assert.Equal((int)(alignment ?? 32), reader.Alignment);
        foreach (var (key, value) in values)
        {
            var read = reader.Metadata[key];
            Assert.Equal(value.Type, read.Type);
            Assert.Equal(value.ElementType, read.ElementType);
            if (value.Value is Array expected)
                Assert.Equal(System.Text.Json.JsonSerializer.Serialize(expected), System.Text.Json.JsonSerializer.Serialize((Array)read.Value));
            else Assert.Equal(value.Value, read.Value);
        }
        Assert.Equal(tensors.Select(t => t.Item1), reader.Tensors.Select(t => t.Name));
        foreach (var (name, type, dims, bytes) in tensors)
        {
            Assert.True(reader.TryGetTensor(name, out var t));
            Assert.Equal(type, t.Type);
            Assert.Equal(dims, t.Dimensions);
            Assert.Equal(0, t.Offset % reader.Alignment);
            var back = new byte[t.Bytes];
            reader.ReadBytes(t, back);
            Assert.Equal(bytes, back);
        }
    }

    /// <summary>The hand-laid file with the bytes from <paramref name="at"/> replaced by <paramref name="patch"/>.</summary>
    private string Patched(string name, int at, params byte[] patch)
    {
        var bytes = ByHand();
        patch.CopyTo(bytes, at);
        File.WriteAllBytes(PathOf(name), bytes);
        return PathOf(name);
    }

    private static byte[] U64(ulong v) => BitConverter.GetBytes(v);

    private static byte[] U32(uint v) => BitConverter.GetBytes(v);

    // Offsets in the hand-laid file: magic 0, version 4, tensor count 8, kv count 16, key length 24, key 32..43, value type 44,
    // value length 48, value 56, tensor name length 57, name 65, rank 66, dim 70, type 78, offset 82, data at 96.
    public static TheoryData<string, int, byte[], string> Malformed => new()
    {
        { "magic", 0, "GGUX"u8.ToArray(), "does not start with \"GGUF\"" },
        { "version", 4, U32(7), "version 7" },
        { "kv-count", 16, U64(1UL << 40), "metadata entries cannot fit" },
        { "tensor-count", 8, U64(1UL << 40), "tensors cannot fit" },
        { "key-length", 24, U64(1UL << 50), "more than the" },
        { "bad-utf8", 32, [0xFF, 0xFE], "not valid UTF-8" },
        { "value-type", 44, U32(99), "value type 99" },
        { "rank", 66, U32(5), "5 dimensions" },
        { "dim-zero", 70, U64(0), "dimension 0 = 0" },
        { "tensor-type", 78, U32(4), "type 4, whose layout is not known" },
        { "q8-blocks", 78, U32(8), "whole number of 32-value blocks" },
        { "misaligned", 82, U64(4), "not a multiple of the alignment" },
        { "past-end", 70, U64(1000), "ends past the data section" },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public void Malformed_headers_are_refused_naming_what_is_wrong(string name, int at, byte[] patch, string expected)
    {
        var e = Assert.Throws<InvalidDataException>(() => GgufReader.Open(Patched(name, at, patch)));
        Assert.Contains(expected, e.Message);
        Assert.Contains(PathOf(name), e.Message);
    }

    [Fact]
    public void Duplicates_overlaps_bad_alignments_and_truncations_are_refused()
    {
        var writer = new GgufWriter();
        Assert.Throws<ArgumentException>(() => { writer.Add("k", new GgufValue(GgufValueType.UInt8, (byte)1)); writer.Add("k", new GgufValue(GgufValueType.UInt8, (byte)1)); });
        Assert.Throws<ArgumentException>(() => writer.AddTensor("q", GgmlType.Q8_0, [33], new byte[34]));
        // An alignment that is not a power of two.
        var bad = new GgufWriter();
        bad.Add("general.alignment", new GgufValue(GgufValueType.UInt32, 3u));
        bad.Save(PathOf("align.gguf"));
        Assert.Contains("general.alignment", Assert.Throws<InvalidDataException>(() => GgufReader.Open(PathOf("align.gguf"))).Message);
        // Two tensors over the same bytes: the second's offset patched to the first's.
        var two = new GgufWriter();
        two.AddTensor("a", GgmlType.F32, [8], new byte[32]);
        two.AddTensor("b", GgmlType.F32, [8], new byte[32]);
        two.Save(PathOf("two.gguf"));
        var bytes = File.ReadAllBytes(PathOf("two.gguf"));
        int offsetOfB = IndexOf(bytes, [1, 0, 0, 0, 0, 0, 0, 0, (byte)'b']) + 9 + 4 + 8 + 4; // name "b", rank, dim, type
        BitConverter.GetBytes(0UL).CopyTo(bytes, offsetOfB);
        File.WriteAllBytes(PathOf("overlap.gguf"), bytes);
        Assert.Contains("overlap", Assert.Throws<InvalidDataException>(() => GgufReader.Open(PathOf("overlap.gguf"))).Message);
        // Every truncation of a valid file before the end of its last tensor is refused (the padding after it is optional).
        var whole = ByHand();
        for (int n = 0; n < 96 + 8; n++)
        {
            File.WriteAllBytes(PathOf("cut.gguf"), whole[..n]);
            Assert.Throws<InvalidDataException>(() => GgufReader.Open(PathOf("cut.gguf")).Dispose());
        }
    }

    private static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (int i = 0; i + needle.Length <= haystack.Length; i++)
            if (haystack.AsSpan(i, needle.Length).SequenceEqual(needle)) return i;
        throw new InvalidOperationException("not found");
    }

    [Fact]
    public void Corrupted_files_open_or_are_refused_with_invalid_data_and_nothing_else()
    {
        var writer = new GgufWriter();
        writer.Add("general.architecture", new GgufValue(GgufValueType.String, "llama"));
        writer.Add("tokenizer.ggml.tokens", new GgufValue(GgufValueType.Array, new[] { "a", "bb", "ccc" }, GgufValueType.String));
        writer.Add("llama.block_count", new GgufValue(GgufValueType.UInt32, 2u));
        writer.AddTensor("t0", GgmlType.F32, [4, 2], new byte[32]);
        writer.AddTensor("t1", GgmlType.Q4_0, [32], new byte[18]);
        writer.Save(PathOf("seed.gguf"));
        byte[] seed = File.ReadAllBytes(PathOf("seed.gguf"));
        var random = new Random(20261206);
        int opened = 0, refused = 0;
        string path = PathOf("fuzz.gguf");
        for (int round = 0; round < 1500; round++)
        {
            byte[] bytes = (round % 3) switch
            {
                0 => Flip(random, seed),
                1 => seed[..random.Next(seed.Length)],
                _ => [.. seed[..(random.Next(seed.Length))], .. Enumerable.Range(0, random.Next(1, 16)).Select(_ => (byte)random.Next(256)), .. seed[random.Next(seed.Length)..]],
            };
            File.WriteAllBytes(path, bytes);
            try
            {
                using var reader = GgufReader.Open(path);
                foreach (var t in reader.Tensors) reader.ReadBytes(t, new byte[t.Bytes]);
                opened++;
            }
            catch (InvalidDataException)
            {
                refused++;
            }
        }
        Assert.True(opened > 0 && refused > 0, $"{opened} opened, {refused} refused");
    }

    private static byte[] Flip(Random random, byte[] seed)
    {
        var bytes = (byte[])seed.Clone();
        for (int i = 0, n = random.Next(1, 4); i < n; i++)
        {
            int at = random.Next(Math.Min(bytes.Length, 200)); // the header, where the parsing is
            bytes[at] = random.Next(3) == 0 ? (byte)0xFF : (byte)random.Next(256);
        }
        return bytes;
    }
}

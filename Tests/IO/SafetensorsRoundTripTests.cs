using LoraRuntime.Cpu;
using LoraRuntime.IO;
using Xunit;

namespace LoraRuntime.Tests.IO;

/// <summary>What the writer writes, the reader reads back bit for bit, lazily and in place where it can.</summary>
public sealed class SafetensorsRoundTripTests : IDisposable
{
    private readonly SafetensorsFiles _files = new();
    private readonly CpuBackend _backend = new();

    public void Dispose()
    {
        _backend.Dispose();
        _files.Dispose();
    }

    /// <summary>Every kind of float32: signed zeros, subnormals, extremes, infinities and NaNs with payloads.</summary>
    private static float[] AwkwardFloats(int count, int seed)
    {
        uint[] special = [0x00000000, 0x80000000, 0x00000001, 0x807FFFFF, 0x00800000, 0x7F7FFFFF, 0xFF7FFFFF,
            0x7F800000, 0xFF800000, 0x7FC00000, 0x7FC00001, 0xFFFFFFFF, 0x7F800001, 0x3F800000, 0x3EAAAAAB];
        var random = new Random(seed);
        var values = new float[count];
        for (int i = 0; i < count; i++)
            values[i] = BitConverter.UInt32BitsToSingle(i < special.Length ? special[i] : (uint)random.NextInt64(0, 1L << 32));
        return values;
    }

    [Fact]
    public void F32_tensors_of_every_rank_and_the_metadata_come_back_bit_exact()
    {
        var shapes = new[] { Array.Empty<int>(), [7], [3, 5], [2, 3, 4], [2, 1, 3, 2], [0, 4], [5, 0, 2] };
        var writer = new SafetensorsWriter();
        var expected = new Dictionary<string, (int[] Dims, float[] Values)>();
        for (int i = 0; i < shapes.Length; i++)
        {
            var values = AwkwardFloats((int)new Shape(shapes[i]).Length, seed: i);
            string name = $"layer.{i}.weight";
            writer.Add(name, values, shapes[i]);
            expected[name] = (shapes[i], values);
        }
        using (var tensor = _backend.FromArray(AwkwardFloats(12, 99), 3, 4))
        {
            writer.Add("from.tensor", tensor);
            expected["from.tensor"] = ([3, 4], tensor.ToArray());
            writer.AddMetadata("format", "pt");
            writer.AddMetadata("note", "ünïcödé \"quoted\" \n newline");
            writer.Save(_files.PathOf("model.safetensors"));
        }

        using var reader = SafetensorsReader.Open(_files.PathOf("model.safetensors"));
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), reader.Entries.Select(e => e.Name));
        Assert.Equal("pt", reader.Metadata["format"]);
        Assert.Equal("ünïcödé \"quoted\" \n newline", reader.Metadata["note"]);
        foreach (var entry in reader.Entries)
        {
            var (dims, values) = expected[entry.Name];
            Assert.Equal(SafetensorsDType.F32, entry.DType);
            Assert.Equal(dims.Select(d => (long)d), entry.Shape);
            Assert.Equal(values.Length, entry.ElementCount);
            Assert.Equal(4L * values.Length, entry.ByteLength);

            var read = new float[values.Length];
            reader.ReadFloat32(entry.Name, read);
            AssertBits(values, read);

            Assert.True(reader.TryGetFloat32Span(entry.Name, out var inPlace), "the writer aligns every F32 tensor");
            AssertBits(values, inPlace.ToArray());

            using var loaded = reader.Load(entry.Name, _backend);
            Assert.Equal(new Shape(dims), loaded.Shape);
            AssertBits(values, loaded.ToArray());
        }
    }

    [Fact]
    public void The_header_is_padded_with_spaces_so_the_data_starts_8_byte_aligned()
    {
        for (int length = 1; length <= 9; length++)
        {
            var writer = new SafetensorsWriter();
            writer.Add(new string('x', length), new float[] { 1, 2 }, 2);
            string path = _files.PathOf($"pad{length}.safetensors");
            writer.Save(path);
            byte[] file = File.ReadAllBytes(path);
            long n = SafetensorsFiles.HeaderLength(file);
            Assert.Equal(0, n % 8);
            string header = SafetensorsFiles.HeaderText(file);
            string json = header.TrimEnd(' ');
            Assert.EndsWith("}", json);
            Assert.InRange(header.Length - json.Length, 0, 7);
            Assert.Equal(8 + n + 8, file.Length);
        }
    }

    [Fact]
    public void LoadInto_fills_a_reserved_tensor_and_checks_its_shape_and_dtype()
    {
        var writer = new SafetensorsWriter();
        writer.Add("w", new float[] { 1, 2, 3, 4, 5, 6 }, 2, 3);
        writer.Save(_files.PathOf("w.safetensors"));
        using var reader = SafetensorsReader.Open(_files.PathOf("w.safetensors"));

        using var reserved = _backend.Zeros(2, 3);
        reader.LoadInto("w", reserved);
        Assert.Equal([1, 2, 3, 4, 5, 6], reserved.ToArray());

        using var wrongShape = _backend.Zeros(3, 2);
        var e = Assert.Throws<ArgumentException>(() => reader.LoadInto("w", wrongShape));
        Assert.Contains("shape [2, 3]", e.Message);
        Assert.Contains("'w'", e.Message);
        using var wrongType = _backend.Allocate(DType.I32, new Shape(2, 3));
        Assert.Throws<ArgumentException>(() => reader.LoadInto("w", wrongType));
    }

    [Fact]
    public void Misuse_is_reported_with_the_file_and_the_tensor()
    {
        var writer = new SafetensorsWriter();
        writer.Add("w", new float[] { 1, 2 }, 2);
        string path = _files.PathOf("w.safetensors");
        writer.Save(path);
        var reader = SafetensorsReader.Open(path);

        var missing = Assert.Throws<KeyNotFoundException>(() => reader.ReadFloat32("nope", new float[2]));
        Assert.Contains(path, missing.Message);
        Assert.Contains("'nope'", missing.Message);
        Assert.False(reader.TryGetEntry("nope", out _));
        var length = Assert.Throws<ArgumentException>(() => reader.ReadFloat32("w", new float[3]));
        Assert.Contains("expected 2 elements", length.Message);
        Assert.Throws<NotSupportedException>(() => reader.ReadInt32("w", new int[2]));

        reader.Dispose();
        reader.Dispose(); // twice is harmless
        Assert.Throws<ObjectDisposedException>(() => reader.ReadFloat32("w", new float[2]));
        Assert.Throws<ObjectDisposedException>(() => reader.TryGetFloat32Span("w", out _));
        Assert.Equal("w", reader.Entries[0].Name); // the parsed header outlives the mapping
    }

    [Fact]
    public void The_writer_rejects_bad_input_when_it_is_added()
    {
        var writer = new SafetensorsWriter();
        writer.Add("a", new float[] { 1 }, 1);
        Assert.Throws<ArgumentException>(() => writer.Add("a", new float[] { 1 }, 1));
        Assert.Throws<ArgumentException>(() => writer.Add("__metadata__", new float[] { 1 }, 1));
        Assert.Throws<ArgumentException>(() => writer.Add("b", new float[] { 1, 2 }, 3));
        Assert.Throws<ArgumentException>(() => writer.Add("c", new float[] { 1 }, -1));
        using var ints = _backend.Allocate(DType.I32, new Shape(2));
        Assert.Throws<ArgumentException>(() => writer.Add("d", ints));
        writer.AddMetadata("k", "v");
        Assert.Throws<ArgumentException>(() => writer.AddMetadata("k", "w"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SafetensorsWriter(SafetensorsDType.I32));

        var disposed = _backend.Zeros(2);
        writer.Add("e", disposed);
        disposed.Dispose();
        string path = _files.PathOf("never.safetensors");
        Assert.Throws<ObjectDisposedException>(() => writer.Save(path));
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void Tensors_are_sorted_by_the_utf8_bytes_of_their_names_as_the_reference_does()
    {
        // UTF-16 order would put the emoji (a surrogate pair, 0xD83D…) before U+FF61; UTF-8 order puts it after.
        string[] names = ["b", "a.9", "\U0001F600", "a", "B", "\uFF61", "a.10", "é"];
        var writer = new SafetensorsWriter();
        foreach (string name in names) writer.Add(name, new float[] { 0 }, 1);
        writer.Save(_files.PathOf("sorted.safetensors"));

        using var reader = SafetensorsReader.Open(_files.PathOf("sorted.safetensors"));
        Assert.Equal(["B", "a", "a.10", "a.9", "b", "é", "\uFF61", "\U0001F600"], reader.Entries.Select(e => e.Name));
        Assert.Equal([0L, 4, 8, 12, 16, 20, 24, 28], reader.Entries.Select(e => e.DataBegin));
    }

    private static void AssertBits(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(BitConverter.SingleToUInt32Bits(expected[i]) == BitConverter.SingleToUInt32Bits(actual[i]),
                $"element {i}: expected bits {BitConverter.SingleToUInt32Bits(expected[i]):X8}, got {BitConverter.SingleToUInt32Bits(actual[i]):X8}");
    }
}

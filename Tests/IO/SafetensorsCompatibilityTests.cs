using System.Text;
using LoraRuntime.Cpu;
using LoraRuntime.IO;
using Xunit;

namespace LoraRuntime.Tests.IO;

/// <summary>
/// Files laid out by hand from the format's description, as other producers write them (any key order, no padding,
/// integer tensors, dtypes we do not load), read correctly; and our writer's bytes are the reference layout.
/// </summary>
public sealed class SafetensorsCompatibilityTests : IDisposable
{
    private readonly SafetensorsFiles _files = new();
    private readonly CpuBackend _backend = new();

    public void Dispose()
    {
        _backend.Dispose();
        _files.Dispose();
    }

    [Fact]
    public void A_hand_built_file_with_every_loadable_dtype_reads_back()
    {
        // Header keys out of offset order, metadata last, no padding: the data region starts at 8 + N with N odd,
        // so the F32 tensor is misaligned and must be copied rather than viewed in place.
        byte[] data =
        [
            .. SafetensorsFiles.Bytes(1.5f, -2f),                          // f32    [0, 8)
            .. SafetensorsFiles.Bytes<ushort>(0x3FC0, 0xC000),             // bf16   [8, 12): 1.5, -2
            .. SafetensorsFiles.Bytes<ushort>(0x3E00, 0xC000, 0x7C00),     // f16    [12, 18): 1.5, -2, inf
            .. SafetensorsFiles.Bytes(7, -8),                              // i32    [18, 26)
            .. SafetensorsFiles.Bytes(int.MaxValue + 0L, int.MinValue + 0L), // i64  [26, 42)
            .. SafetensorsFiles.Bytes<byte>(1, 2, 3),                      // u8     [42, 45)
        ];
        string header = """
            {"i64":{"dtype":"I64","shape":[2],"data_offsets":[26,42]},
             "f32":{"shape":[1,2],"dtype":"F32","data_offsets":[0,8]},
             "bf16":{"data_offsets":[8,12],"dtype":"BF16","shape":[2]},
             "f16":{"dtype":"F16","shape":[3],"data_offsets":[12,18]},
             "i32":{"dtype":"I32","shape":[2,1],"data_offsets":[18,26]},
             "u8":{"dtype":"U8","shape":[3],"data_offsets":[42,45]},
             "__metadata__":{"format":"pt","escaped":"tab\there \u00e9"}}
            """;
        if (Encoding.UTF8.GetByteCount(header) % 2 == 0) header += " ";
        string path = _files.Write(SafetensorsFiles.Layout(header, data));

        using var reader = SafetensorsReader.Open(path);
        Assert.Equal(["f32", "bf16", "f16", "i32", "i64", "u8"], reader.Entries.Select(e => e.Name));
        Assert.Equal("pt", reader.Metadata["format"]);
        Assert.Equal("tab\there é", reader.Metadata["escaped"]);

        Assert.False(reader.TryGetFloat32Span("f32", out _)); // misaligned: copied instead
        Assert.Equal([1.5f, -2f], Floats(reader, "f32"));
        Assert.Equal([1.5f, -2f], Floats(reader, "bf16"));
        Assert.Equal([1.5f, -2f, float.PositiveInfinity], Floats(reader, "f16"));
        Assert.Equal([7, -8], Ints(reader, "i32"));
        Assert.Equal([int.MaxValue, int.MinValue], Ints(reader, "i64"));

        using var f32 = reader.Load("f32", _backend);
        Assert.Equal(new Shape(1, 2), f32.Shape);
        Assert.Equal([1.5f, -2f], f32.ToArray());
        using var i32 = reader.Load("i32", _backend);
        Assert.Equal(DType.I32, i32.DType);
        Assert.Equal(new Shape(2, 1), i32.Shape);
        Assert.Equal([7, -8], i32.AsInt32Span().ToArray());
        using var i64 = reader.Load("i64", _backend);
        Assert.Equal([int.MaxValue, int.MinValue], i64.AsInt32Span().ToArray());

        var u8 = reader["u8"];
        Assert.Equal(SafetensorsDType.U8, u8.DType);
        Assert.Equal(3, u8.ByteLength);
        Assert.Throws<NotSupportedException>(() => reader.Load("u8", _backend));
        Assert.Throws<NotSupportedException>(() => reader.ReadFloat32("u8", new float[3]));
    }

    [Fact]
    public void An_I64_value_outside_the_int_range_is_invalid_data_naming_the_element()
    {
        string header = """{"ids":{"dtype":"I64","shape":[3],"data_offsets":[0,24]}}""";
        string path = _files.Write(SafetensorsFiles.Layout(header, SafetensorsFiles.Bytes(1L, 2L, 1L << 40)));
        using var reader = SafetensorsReader.Open(path);
        var e = Assert.Throws<InvalidDataException>(() => reader.ReadInt32("ids", new int[3]));
        Assert.Contains(path, e.Message);
        Assert.Contains("'ids'", e.Message);
        Assert.Contains("element 2", e.Message);
        Assert.Contains((1L << 40).ToString(), e.Message);
    }

    [Fact]
    public void Higher_ranks_and_scalars_and_sub_byte_types_are_readable_for_inspection()
    {
        string header = """
            {"r5":{"dtype":"F32","shape":[1,1,1,1,2],"data_offsets":[0,8]},
             "s":{"dtype":"F32","shape":[],"data_offsets":[8,12]},
             "e":{"dtype":"F32","shape":[0,3],"data_offsets":[12,12]},
             "f4":{"dtype":"F4","shape":[2,3],"data_offsets":[12,15]}}
            """;
        string path = _files.Write(SafetensorsFiles.Layout(header, SafetensorsFiles.Bytes(1f, 2f, 3f, 0f)[..15]));
        using var reader = SafetensorsReader.Open(path);
        Assert.Equal([1L, 1, 1, 1, 2], reader["r5"].Shape);
        Assert.Equal(2, reader["r5"].ElementCount);
        Assert.Equal([1f, 2f], Floats(reader, "r5"));
        Assert.Throws<NotSupportedException>(() => reader.Load("r5", _backend));
        Assert.Empty(reader["s"].Shape);
        Assert.Equal(1, reader["s"].ElementCount);
        using var scalar = reader.Load("s", _backend);
        Assert.Equal([3f], scalar.ToArray());
        Assert.Equal(0, reader["e"].ElementCount);
        using var empty = reader.Load("e", _backend);
        Assert.Equal(new Shape(0, 3), empty.Shape);
        Assert.Equal(3, reader["f4"].ByteLength);
    }

    [Fact]
    public void The_writer_produces_the_reference_layout_byte_for_byte()
    {
        // The reference implementation serializes one F32 tensor "attn.0" of shape [1, 2, 3] holding 0..5 as a
        // 64-byte header (already a multiple of 8, so unpadded) followed by the 24 data bytes.
        var writer = new SafetensorsWriter();
        writer.Add("attn.0", new float[] { 0, 1, 2, 3, 4, 5 }, 1, 2, 3);
        writer.Save(_files.PathOf("ref.safetensors"));
        byte[] expected = SafetensorsFiles.Layout(
            """{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}""", SafetensorsFiles.Bytes(0f, 1f, 2f, 3f, 4f, 5f));
        Assert.Equal(64, SafetensorsFiles.HeaderLength(expected));
        Assert.Equal(expected, File.ReadAllBytes(_files.PathOf("ref.safetensors")));
    }

    [Fact]
    public void Empty_files_and_metadata_only_files_match_the_reference_and_read_back()
    {
        new SafetensorsWriter().Save(_files.PathOf("empty.safetensors"));
        Assert.Equal(SafetensorsFiles.Layout("{}      ", []), File.ReadAllBytes(_files.PathOf("empty.safetensors")));

        var writer = new SafetensorsWriter();
        writer.AddMetadata("framework", "pt");
        writer.Save(_files.PathOf("meta.safetensors"));
        Assert.Equal(SafetensorsFiles.Layout("""{"__metadata__":{"framework":"pt"}}     """, []), File.ReadAllBytes(_files.PathOf("meta.safetensors")));

        using var reader = SafetensorsReader.Open(_files.PathOf("meta.safetensors"));
        Assert.Empty(reader.Entries);
        Assert.Equal("pt", reader.Metadata["framework"]);
        using var empty = SafetensorsReader.Open(_files.PathOf("empty.safetensors"));
        Assert.Empty(empty.Entries);
        Assert.Empty(empty.Metadata);
    }

    [Fact]
    public void A_null_metadata_is_no_metadata_and_zero_size_tensors_may_share_an_offset()
    {
        string header = """{"__metadata__":null,"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"BF16","shape":[2,0],"data_offsets":[0,0]},"c":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""";
        using var reader = SafetensorsReader.Open(_files.Write(SafetensorsFiles.Layout(header, SafetensorsFiles.Bytes(9f))));
        Assert.Empty(reader.Metadata);
        Assert.Equal(["a", "b", "c"], reader.Entries.Select(e => e.Name));
        Assert.Equal([9f], Floats(reader, "c"));
    }

    private static float[] Floats(SafetensorsReader reader, string name)
    {
        var values = new float[reader[name].ElementCount];
        reader.ReadFloat32(name, values);
        return values;
    }

    private static int[] Ints(SafetensorsReader reader, string name)
    {
        var values = new int[reader[name].ElementCount];
        reader.ReadInt32(name, values);
        return values;
    }
}

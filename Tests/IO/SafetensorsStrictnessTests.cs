using System.Text;
using LoraRuntime.IO;
using Xunit;

namespace LoraRuntime.Tests.IO;

/// <summary>Every rule of the format the reader enforces: each broken file is an InvalidDataException naming the file, the tensor and the problem, on one line.</summary>
public sealed class SafetensorsStrictnessTests : IDisposable
{
    private readonly SafetensorsFiles _files = new();

    public void Dispose() => _files.Dispose();

    private const string F32x2 = """{"dtype":"F32","shape":[2],"data_offsets":[0,8]}""";

    /// <summary>(why, header, bytes of data, what the message must say).</summary>
    public static TheoryData<string, string, int, string> BrokenHeaders => new()
    {
        { "not JSON", """{"w":""", 0, "not valid JSON" },
        { "trailing text", """{} x""", 0, "not valid JSON" },
        { "a trailing comma", """{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],}}""", 8, "not valid JSON" },
        { "nesting too deep", "{\"__metadata__\":" + new string('[', 100) + new string(']', 100) + "}", 0, "not valid JSON" },
        { "an array", """[1,2]""", 0, "does not begin with '{'" },
        { "a string", "\"x\"", 0, "does not begin with '{'" },
        { "leading whitespace", " {}", 0, "does not begin with '{'" },
        { "empty", "", 0, "the header is empty" },
        { "metadata number value", """{"__metadata__":{"a":1}}""", 0, "__metadata__ value of 'a' is a number" },
        { "metadata null value", """{"__metadata__":{"a":null}}""", 0, "__metadata__ value of 'a' is null" },
        { "metadata nested value", """{"__metadata__":{"a":{"b":"c"}}}""", 0, "__metadata__ value of 'a' is an object" },
        { "metadata not an object", """{"__metadata__":"x"}""", 0, "__metadata__ is a string" },
        { "metadata key twice", """{"__metadata__":{"a":"1","a":"2"}}""", 0, "has the key 'a' twice" },
        { "two metadata", """{"__metadata__":{},"__metadata__":{}}""", 0, "two __metadata__ keys" },
        { "a name twice", "{\"w\":" + F32x2 + ""","w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}""", 16, "tensor 'w' appears twice" },
        { "begin after end", """{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}""", 4, "tensor 'w': data_offsets [4, 0] begin after they end" },
        { "end past the data", "{\"w\":" + F32x2 + "}", 4, "tensor 'w': data_offsets [0, 8] run past the end of the 4-byte data region" },
        { "begin past the data", """{"w":{"dtype":"F32","shape":[0],"data_offsets":[9,9]}}""", 8, "tensor 'w': data_offsets [9, 9] run past the end" },
        { "overlap", "{\"a\":" + F32x2 + ""","b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12, "tensor 'b' data_offsets [4, 12] overlap tensor 'a' [0, 8]" },
        { "same range twice", "{\"a\":" + F32x2 + ",\"b\":" + F32x2 + "}", 8, "overlap tensor 'a'" },
        { "an empty tensor inside another", "{\"a\":" + F32x2 + ""","b":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}""", 8, "tensor 'b' data_offsets [4, 4] overlap tensor 'a'" },
        { "a hole", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}""", 12, "bytes [4, 8) of the data region, before tensor 'b', belong to no tensor" },
        { "not from zero", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "bytes [0, 4) of the data region, before tensor 'a'" },
        { "unindexed tail", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 8, "bytes [4, 8) at the end of the data region belong to no tensor" },
        { "data but no tensors", """{}""", 3, "bytes [0, 3) at the end" },
        { "size mismatch", """{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8, "tensor 'w': dtype F32 and shape [3] need 12 bytes but data_offsets [0, 8] hold 8" },
        { "element count overflow", """{"w":{"dtype":"U8","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,0]}}""", 0, "tensor 'w': the element count of shape [4294967296, 4294967296, 4294967296] overflows 64 bits" },
        { "byte size overflow", """{"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]}}""", 0, "tensor 'w': the size of shape [4611686018427387904] in F64 overflows 64 bits" },
        { "a partial byte", """{"w":{"dtype":"F4","shape":[3],"data_offsets":[0,1]}}""", 1, "tensor 'w': 3 elements of F4 do not fill a whole number of bytes" },
        { "negative dimension", """{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}""", 0, "tensor 'w': shape[0] is negative: -1" },
        { "fractional dimension", """{"w":{"dtype":"F32","shape":[2,1.5],"data_offsets":[0,0]}}""", 0, "tensor 'w': shape[1] is not an integer: 1.5" },
        { "exponent dimension", """{"w":{"dtype":"F32","shape":[1e2],"data_offsets":[0,400]}}""", 400, "tensor 'w': shape[0] is not an integer: 1e2" },
        { "dimension beyond 64 bits", """{"w":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,0]}}""", 0, "tensor 'w': shape[0] is above" },
        { "string dimension", """{"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}""", 8, "tensor 'w': shape[0] is a string" },
        { "shape not an array", """{"w":{"dtype":"F32","shape":2,"data_offsets":[0,8]}}""", 8, "tensor 'w': shape is a number" },
        { "too many dimensions", "{\"w\":{\"dtype\":\"F32\",\"shape\":[" + string.Join(",", Enumerable.Repeat(1, 65)) + "],\"data_offsets\":[0,4]}}", 4, "tensor 'w': shape has more than 64 dimensions" },
        { "negative offset", """{"w":{"dtype":"F32","shape":[0],"data_offsets":[-4,0]}}""", 0, "tensor 'w': data_offsets[0] is negative" },
        { "fractional offset", """{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4.0]}}""", 4, "tensor 'w': data_offsets[1] is not an integer" },
        { "huge offset", """{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}}""", 4, "tensor 'w': data_offsets[1] is above" },
        { "three offsets", """{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}""", 4, "tensor 'w': data_offsets has more than two numbers" },
        { "one offset", """{"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}}""", 4, "tensor 'w': data_offsets has 1 number;" },
        { "offsets not an array", """{"w":{"dtype":"F32","shape":[1],"data_offsets":"0,4"}}""", 4, "tensor 'w': data_offsets is a string" },
        { "unknown dtype", """{"w":{"dtype":"F31","shape":[1],"data_offsets":[0,4]}}""", 4, "tensor 'w' has the unknown dtype 'F31'" },
        { "lower-case dtype", """{"w":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}""", 4, "tensor 'w' has the unknown dtype 'f32'" },
        { "long dtype", """{"w":{"dtype":"FLOAT32_BUT_MUCH_LONGER_THAN_ANY","shape":[1],"data_offsets":[0,4]}}""", 4, "unknown dtype 'FLOAT32_BUT_MUCH_LONGER_THAN_ANY'" },
        { "dtype not a string", """{"w":{"dtype":32,"shape":[1],"data_offsets":[0,4]}}""", 4, "tensor 'w': dtype is a number" },
        { "no dtype", """{"w":{"shape":[1],"data_offsets":[0,4]}}""", 4, "tensor 'w' has no dtype" },
        { "no shape", """{"w":{"dtype":"F32","data_offsets":[0,4]}}""", 4, "tensor 'w' has no shape" },
        { "no offsets", """{"w":{"dtype":"F32","shape":[1]}}""", 4, "tensor 'w' has no data_offsets" },
        { "an unexpected key", """{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"stride":[1]}}""", 4, "tensor 'w' has the unexpected key 'stride'" },
        { "a key twice", """{"w":{"dtype":"F32","shape":[1],"shape":[1],"data_offsets":[0,4]}}""", 4, "tensor 'w' has two shape keys" },
        { "a tensor that is not an object", """{"w":[0,4]}""", 0, "tensor 'w' is an array" },
        { "a lone surrogate in a name", """{"\ud800":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 4, "a tensor name is not valid Unicode" },
        { "a control character in a name", """{"line\nbreak":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 4, "overlap tensor 'line\\u000abreak'" },
    };

    [Theory]
    [MemberData(nameof(BrokenHeaders))]
    public void A_broken_header_is_rejected_naming_the_file_and_the_problem(string why, string header, int dataBytes, string expected)
    {
        string path = _files.Write(SafetensorsFiles.Layout(header, new byte[dataBytes]));
        AssertRejected(path, expected, why);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(7)]
    public void A_file_shorter_than_the_8_byte_length_is_rejected(int length)
    {
        string path = _files.Write(new byte[length]);
        // An empty file is refused before it is opened, as a device or a pipe is (they report no length either).
        AssertRejected(path, length == 0 ? "the file is empty, or not a regular file" : $"the file is {length} bytes long", "short file");
    }

    [Theory]
    [InlineData(3UL, "only 2 bytes follow")]                            // one more than there is
    [InlineData(1UL << 40, "above the 100 MiB limit")]
    [InlineData((100UL << 20) + 1, "above the 100 MiB limit")]
    [InlineData(ulong.MaxValue, "above the 100 MiB limit")]
    public void A_lying_header_length_is_rejected_before_anything_is_allocated(ulong declared, string expected)
    {
        string path = _files.Write(SafetensorsFiles.Layout(declared, "{}"u8, []));
        AssertRejected(path, expected, "lying length"); // the first throw from here fills caches; measure the second
        long before = GC.GetAllocatedBytesForCurrentThread();
        InvalidDataException? rejected = null;
        try
        {
            SafetensorsReader.Open(path).Dispose();
        }
        catch (InvalidDataException e)
        {
            rejected = e;
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.NotNull(rejected);
        Assert.True(allocated < 16 * 1024, $"{allocated} bytes allocated");
    }

    [Fact]
    public void A_header_that_is_not_utf8_is_rejected()
    {
        byte[] header = [.. "{\""u8, 0xC3, 0x28, .. "\":{}}"u8];
        string path = _files.Write(SafetensorsFiles.Layout(header, []));
        AssertRejected(path, "the header is not valid UTF-8", "bad UTF-8");
    }

    [Fact]
    public void A_header_of_many_tiny_tensors_allocates_in_proportion_to_its_size()
    {
        // 20,000 zero-size tensors: the header is all there is, so allocation per byte of header is what is measured.
        var header = new StringBuilder("{");
        for (int i = 0; i < 20_000; i++)
            header.Append(i == 0 ? "" : ",").Append($$"""
                "t{{i}}":{"dtype":"F32","shape":[0,{{i % 7}}],"data_offsets":[0,0]}
                """);
        header.Append('}');
        byte[] file = SafetensorsFiles.Layout(header.ToString(), []);
        string path = _files.Write(file);
        using (SafetensorsReader.Open(path)) { } // the first open runs static initializers

        long before = GC.GetAllocatedBytesForCurrentThread();
        using (var reader = SafetensorsReader.Open(path)) Assert.Equal(20_000, reader.Entries.Count);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 4L * file.Length, $"{allocated} bytes allocated to open a {file.Length}-byte file");
    }

    private static void AssertRejected(string path, string expected, string why)
    {
        var e = Assert.Throws<InvalidDataException>(() => SafetensorsReader.Open(path).Dispose());
        Assert.StartsWith(path + ": ", e.Message);
        Assert.True(e.Message.Contains(expected, StringComparison.Ordinal), $"{why}: expected the message to contain \"{expected}\"; got \"{e.Message}\"");
        Assert.DoesNotContain('\n', e.Message);
        Assert.DoesNotContain('\r', e.Message);
    }
}

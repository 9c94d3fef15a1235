namespace LoraRuntime.IO;

/// <summary>The tensor types of GGUF files (ggml's type ids) that the runtime knows the block layout of.</summary>
public enum GgmlType : uint
{
    /// <summary>float32.</summary>
    F32 = 0,

    /// <summary>IEEE half precision.</summary>
    F16 = 1,

    /// <summary>Blocks of 32: an F16 scale, 16 bytes of nibbles.</summary>
    Q4_0 = 2,

    /// <summary>Blocks of 32: F16 scale and minimum, 16 bytes of nibbles.</summary>
    Q4_1 = 3,

    /// <summary>Blocks of 32: an F16 scale, 4 bytes of high bits, 16 bytes of nibbles.</summary>
    Q5_0 = 6,

    /// <summary>Blocks of 32: F16 scale and minimum, 4 bytes of high bits, 16 bytes of nibbles.</summary>
    Q5_1 = 7,

    /// <summary>Blocks of 32: an F16 scale, 32 int8.</summary>
    Q8_0 = 8,

    /// <summary>Blocks of 32: F16 scale and sum, 32 int8.</summary>
    Q8_1 = 9,

    /// <summary>Super-blocks of 256, 2-bit.</summary>
    Q2_K = 10,

    /// <summary>Super-blocks of 256, 3-bit.</summary>
    Q3_K = 11,

    /// <summary>Super-blocks of 256, 4-bit (most Q4_K_M files).</summary>
    Q4_K = 12,

    /// <summary>Super-blocks of 256, 5-bit.</summary>
    Q5_K = 13,

    /// <summary>Super-blocks of 256, 6-bit (Q4_K_M files' output and some attention tensors).</summary>
    Q6_K = 14,

    /// <summary>Super-blocks of 256, 8-bit (intermediate).</summary>
    Q8_K = 15,

    /// <summary>bfloat16.</summary>
    BF16 = 30,
}

/// <summary>The value types of GGUF metadata.</summary>
public enum GgufValueType : uint
{
    /// <summary>u8.</summary>
    UInt8 = 0,
    /// <summary>i8.</summary>
    Int8 = 1,
    /// <summary>u16.</summary>
    UInt16 = 2,
    /// <summary>i16.</summary>
    Int16 = 3,
    /// <summary>u32.</summary>
    UInt32 = 4,
    /// <summary>i32.</summary>
    Int32 = 5,
    /// <summary>f32.</summary>
    Float32 = 6,
    /// <summary>A byte, 0 or 1.</summary>
    Bool = 7,
    /// <summary>A u64 length and UTF-8 bytes.</summary>
    String = 8,
    /// <summary>An element type, a u64 count, the elements.</summary>
    Array = 9,
    /// <summary>u64.</summary>
    UInt64 = 10,
    /// <summary>i64.</summary>
    Int64 = 11,
    /// <summary>f64.</summary>
    Float64 = 12,
}

/// <summary>
/// A metadata value: <see cref="Value"/> is a byte, sbyte, ushort, short, uint, int, float, bool, string, ulong, long or
/// double as <see cref="Type"/> says, or for an array an <see cref="Array"/> of them (strings as string[], the rest as
/// object[]; an array of arrays holds a <see cref="GgufValue"/> per inner array), its element type in <see cref="ElementType"/>.
/// </summary>
public sealed record GgufValue(GgufValueType Type, object Value, GgufValueType? ElementType = null)
{
    /// <summary>The value as a string; an <see cref="InvalidDataException"/> when it is not one.</summary>
    public string AsString() => Value as string ?? throw new InvalidDataException($"expected a string; the value is a {Type}");

    /// <summary>The value as an integer of any width; an <see cref="InvalidDataException"/> when it is not one or does not fit a long.</summary>
    public long AsInteger() => Value switch
    {
        byte v => v, sbyte v => v, ushort v => v, short v => v, uint v => v, int v => v, long v => v,
        ulong v when v <= long.MaxValue => (long)v,
        _ => throw new InvalidDataException($"expected an integer; the value is a {Type} ({Value})"),
    };

    /// <summary>The value as a floating-point number (an integer widened).</summary>
    public double AsDouble() => Value switch
    {
        float v => v, double v => v,
        _ => AsInteger(),
    };
}

/// <summary>
/// A tensor of a GGUF file: its name, type, dimensions as ggml lists them (the first the fastest-varying: columns
/// first), its offset in the data section and its size in bytes.
/// </summary>
public sealed record GgufTensorInfo(string Name, GgmlType Type, long[] Dimensions, long Offset, long Bytes)
{
    /// <summary>The number of elements.</summary>
    public long ElementCount => Dimensions.Aggregate(1L, (a, b) => a * b);
}

/// <summary>The block layouts of ggml's tensor types.</summary>
public static class GgmlTypes
{
    /// <summary>(values a block holds, bytes a block takes) of <paramref name="type"/>; false for a type the runtime does not know.</summary>
    public static bool TryGetBlock(GgmlType type, out int values, out int bytes)
    {
        (values, bytes) = type switch
        {
            GgmlType.F32 => (1, 4),
            GgmlType.F16 or GgmlType.BF16 => (1, 2),
            GgmlType.Q4_0 => (32, 18),
            GgmlType.Q4_1 => (32, 20),
            GgmlType.Q5_0 => (32, 22),
            GgmlType.Q5_1 => (32, 24),
            GgmlType.Q8_0 => (32, 34),
            GgmlType.Q8_1 => (32, 36),
            GgmlType.Q2_K => (256, 84),
            GgmlType.Q3_K => (256, 110),
            GgmlType.Q4_K => (256, 144),
            GgmlType.Q5_K => (256, 176),
            GgmlType.Q6_K => (256, 210),
            GgmlType.Q8_K => (256, 292),
            _ => (0, 0),
        };
        return values > 0;
    }
}

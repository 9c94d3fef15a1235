namespace LoraRuntime.IO;

/// <summary>
/// The element types of the safetensors format, named exactly as a file's header spells them. They are declared in
/// the reference implementation's order (increasing alignment), which the writer's tensor order follows.
/// </summary>
public enum SafetensorsDType
{
    /// <summary>Boolean, one byte.</summary>
    BOOL,
    /// <summary>4-bit float (E2M1), two per byte.</summary>
    F4,
    /// <summary>6-bit float (E2M3), four per three bytes.</summary>
    F6_E2M3,
    /// <summary>6-bit float (E3M2), four per three bytes.</summary>
    F6_E3M2,
    /// <summary>Unsigned 8-bit integer.</summary>
    U8,
    /// <summary>Signed 8-bit integer.</summary>
    I8,
    /// <summary>8-bit float (E5M2).</summary>
    F8_E5M2,
    /// <summary>8-bit float (E4M3).</summary>
    F8_E4M3,
    /// <summary>8-bit exponent-only scale (E8M0).</summary>
    F8_E8M0,
    /// <summary>Signed 16-bit integer.</summary>
    I16,
    /// <summary>Unsigned 16-bit integer.</summary>
    U16,
    /// <summary>IEEE half precision; read as float32.</summary>
    F16,
    /// <summary>bfloat16 (the top half of a float32); read as float32.</summary>
    BF16,
    /// <summary>Signed 32-bit integer; read as int.</summary>
    I32,
    /// <summary>Unsigned 32-bit integer.</summary>
    U32,
    /// <summary>IEEE single precision.</summary>
    F32,
    /// <summary>Complex of two float32.</summary>
    C64,
    /// <summary>IEEE double precision.</summary>
    F64,
    /// <summary>Signed 64-bit integer; read as int when every value fits.</summary>
    I64,
    /// <summary>Unsigned 64-bit integer.</summary>
    U64,
}

/// <summary>Sizes and names of <see cref="SafetensorsDType"/>.</summary>
internal static class SafetensorsDTypes
{
    /// <summary>Bits per element.</summary>
    public static int Bits(this SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.F4 => 4,
        SafetensorsDType.F6_E2M3 or SafetensorsDType.F6_E3M2 => 6,
        SafetensorsDType.BOOL or SafetensorsDType.U8 or SafetensorsDType.I8
            or SafetensorsDType.F8_E5M2 or SafetensorsDType.F8_E4M3 or SafetensorsDType.F8_E8M0 => 8,
        SafetensorsDType.I16 or SafetensorsDType.U16 or SafetensorsDType.F16 or SafetensorsDType.BF16 => 16,
        SafetensorsDType.I32 or SafetensorsDType.U32 or SafetensorsDType.F32 => 32,
        SafetensorsDType.C64 or SafetensorsDType.F64 or SafetensorsDType.I64 or SafetensorsDType.U64 => 64,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown safetensors dtype"),
    };

    /// <summary>True for the types read as float32: F32, F16, BF16.</summary>
    public static bool IsFloat(this SafetensorsDType dtype) =>
        dtype is SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16;

    /// <summary>True for the types read as int: I32, I64.</summary>
    public static bool IsInteger(this SafetensorsDType dtype) => dtype is SafetensorsDType.I32 or SafetensorsDType.I64;

    /// <summary>The dtype a header spells as <paramref name="utf8"/> (exact, case-sensitive), without allocating.</summary>
    public static bool TryParse(ReadOnlySpan<byte> utf8, out SafetensorsDType dtype)
    {
        for (var d = SafetensorsDType.BOOL; d <= SafetensorsDType.U64; d++)
        {
            if (Matches(utf8, d))
            {
                dtype = d;
                return true;
            }
        }
        dtype = default;
        return false;
    }

    // Enum names are the header's spellings and are ASCII, so a byte-for-char comparison is exact.
    private static bool Matches(ReadOnlySpan<byte> utf8, SafetensorsDType dtype)
    {
        string name = Name(dtype);
        if (utf8.Length != name.Length) return false;
        for (int i = 0; i < name.Length; i++)
            if (utf8[i] != name[i]) return false;
        return true;
    }

    /// <summary>The header spelling, without the reflection of <see cref="Enum.ToString()"/> on a hot path.</summary>
    public static string Name(this SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.BOOL => "BOOL",
        SafetensorsDType.F4 => "F4",
        SafetensorsDType.F6_E2M3 => "F6_E2M3",
        SafetensorsDType.F6_E3M2 => "F6_E3M2",
        SafetensorsDType.U8 => "U8",
        SafetensorsDType.I8 => "I8",
        SafetensorsDType.F8_E5M2 => "F8_E5M2",
        SafetensorsDType.F8_E4M3 => "F8_E4M3",
        SafetensorsDType.F8_E8M0 => "F8_E8M0",
        SafetensorsDType.I16 => "I16",
        SafetensorsDType.U16 => "U16",
        SafetensorsDType.F16 => "F16",
        SafetensorsDType.BF16 => "BF16",
        SafetensorsDType.I32 => "I32",
        SafetensorsDType.U32 => "U32",
        SafetensorsDType.F32 => "F32",
        SafetensorsDType.C64 => "C64",
        SafetensorsDType.F64 => "F64",
        SafetensorsDType.I64 => "I64",
        SafetensorsDType.U64 => "U64",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown safetensors dtype"),
    };
}

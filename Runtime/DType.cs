namespace LoraRuntime;

/// <summary>Element type of a <see cref="Tensor"/>.</summary>
public enum DType
{
    /// <summary>32-bit IEEE float.</summary>
    F32,
    /// <summary>32-bit signed integer (token ids, targets).</summary>
    I32,
    /// <summary>Raw bytes: the blocks of a <see cref="QuantizedMatrix"/>.</summary>
    U8,
}

/// <summary>Sizes of the element types.</summary>
public static class DTypeExtensions
{
    /// <summary>Bytes per element.</summary>
    public static int SizeInBytes(this DType dtype) => dtype switch
    {
        DType.F32 or DType.I32 => 4,
        DType.U8 => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };
}

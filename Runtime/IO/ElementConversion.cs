using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace LoraRuntime.IO;

/// <summary>
/// Element conversions between stored types and float32/int, over raw little-endian bytes that may sit at any
/// address of a mapped file: an aligned source is read in place, a misaligned one through a small stack buffer.
/// </summary>
internal static unsafe class ElementConversion
{
    private const int ChunkElements = 1024;

    /// <summary>float32 elements at <paramref name="source"/> into <paramref name="destination"/> (a copy: any alignment).</summary>
    public static void Float32ToSingle(byte* source, Span<float> destination)
    {
        fixed (float* d = destination)
            Buffer.MemoryCopy(source, d, (long)destination.Length * 4, (long)destination.Length * 4);
    }

    /// <summary>IEEE half elements at <paramref name="source"/> into float32 (exact).</summary>
    public static void Float16ToSingle(byte* source, Span<float> destination) =>
        Widen16(source, destination, &Float16ToSingle);

    /// <summary>bfloat16 elements at <paramref name="source"/> into float32 (exact: the bits become the top half).</summary>
    public static void BFloat16ToSingle(byte* source, Span<float> destination) =>
        Widen16(source, destination, &BFloat16ToSingle);

    /// <summary>int32 elements at <paramref name="source"/> into <paramref name="destination"/> (a copy: any alignment).</summary>
    public static void Int32ToInt32(byte* source, Span<int> destination)
    {
        fixed (int* d = destination)
            Buffer.MemoryCopy(source, d, (long)destination.Length * 4, (long)destination.Length * 4);
    }

    /// <summary>
    /// int64 elements at <paramref name="source"/> narrowed into <paramref name="destination"/>; returns the index of
    /// the first value outside the int range, with that <paramref name="value"/> (the destination is then partly
    /// written), or -1.
    /// </summary>
    public static long Int64ToInt32(byte* source, Span<int> destination, out long value)
    {
        for (int i = 0; i < destination.Length; i++)
        {
            value = Unsafe.ReadUnaligned<long>(source + 8L * i);
            if (value is < int.MinValue or > int.MaxValue) return i;
            destination[i] = (int)value;
        }
        value = 0;
        return -1;
    }

    /// <summary>float32 to IEEE half bits, rounding to nearest even (overflow becomes infinity, NaN stays NaN).</summary>
    public static void SingleToFloat16(ReadOnlySpan<float> source, Span<ushort> destination) =>
        TensorPrimitives.ConvertToHalf(source, MemoryMarshal.Cast<ushort, Half>(destination));

    /// <summary>float32 to bfloat16 bits, rounding to nearest even; a NaN stays a quiet NaN of the same sign.</summary>
    public static void SingleToBFloat16(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        for (int i = 0; i < source.Length; i++) destination[i] = SingleToBFloat16(source[i]);
    }

    /// <summary>One float32 to bfloat16 bits, rounding to nearest even.</summary>
    public static ushort SingleToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        // Truncating a NaN whose payload sits in the low half would leave infinity: set the quiet bit instead.
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x0040);
        uint roundingBias = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + roundingBias) >> 16);
    }

    private static void Float16ToSingle(ReadOnlySpan<ushort> bits, Span<float> destination) =>
        TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<ushort, Half>(bits), destination);

    private static void BFloat16ToSingle(ReadOnlySpan<ushort> bits, Span<float> destination)
    {
        var wide = MemoryMarshal.Cast<float, uint>(destination);
        TensorPrimitives.ConvertTruncating(bits, wide);
        TensorPrimitives.ShiftLeft(wide, 16, wide);
    }

    private static void Widen16(byte* source, Span<float> destination, delegate*<ReadOnlySpan<ushort>, Span<float>, void> widen)
    {
        if (((nint)source & 1) == 0)
        {
            widen(new ReadOnlySpan<ushort>(source, destination.Length), destination);
            return;
        }
        Span<ushort> aligned = stackalloc ushort[ChunkElements];
        for (int start = 0; start < destination.Length; start += ChunkElements)
        {
            int count = Math.Min(ChunkElements, destination.Length - start);
            new ReadOnlySpan<byte>(source + 2L * start, 2 * count).CopyTo(MemoryMarshal.AsBytes(aligned));
            widen(aligned[..count], destination.Slice(start, count));
        }
    }
}

using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Numerics.Tensors;

namespace LoraRuntime.Quantization;

/// <summary>
/// Rows of a <see cref="QuantizedMatrix"/> in every <see cref="WeightFormat"/>: encoding float32 values (F16 and BF16
/// rounded to nearest even, Q8_0 and Q4_0 as llama.cpp rounds, NF4 as bitsandbytes does, its block stored as the
/// float32 absmax then the 32 packed bytes) and decoding them back, the decoder vectorized (AVX-512, AVX2, scalar) for
/// the kernels that dequantize weights on the fly. A row is a whole number of blocks; nothing here allocates.
/// </summary>
public static unsafe class WeightRows
{
    /// <summary>Encodes <paramref name="values"/> (one row or several, a whole number of blocks) into <paramref name="encoded"/>.</summary>
    public static void Encode(WeightFormat format, ReadOnlySpan<float> values, Span<byte> encoded)
    {
        CheckSizes(format, values.Length, encoded.Length, nameof(encoded));
        switch (format)
        {
            case WeightFormat.F16:
                for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteHalfLittleEndian(encoded[(2 * i)..], (Half)values[i]);
                break;
            case WeightFormat.BF16:
                for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteUInt16LittleEndian(encoded[(2 * i)..], ToBFloat16(values[i]));
                break;
            case WeightFormat.Q8_0: QuantBlocks.Quantize(QuantFormat.Q8_0, values, encoded); break;
            case WeightFormat.Q4_0: QuantBlocks.Quantize(QuantFormat.Q4_0, values, encoded); break;
            case WeightFormat.NF4:
                Span<float> absmax = stackalloc float[1];
                for (int b = 0; b < values.Length / Nf4Blocks.BlockSize; b++)
                {
                    var block = encoded.Slice(b * WeightFormats.Nf4BlockBytes, WeightFormats.Nf4BlockBytes);
                    Nf4Blocks.Quantize(values.Slice(b * Nf4Blocks.BlockSize, Nf4Blocks.BlockSize), block[4..], absmax);
                    BinaryPrimitives.WriteSingleLittleEndian(block, absmax[0]);
                }
                break;
            default:
                throw new ArgumentException($"format: expected F16, BF16, Q8_0, Q4_0 or NF4 to encode; got {format}{(format.CanEncode() ? "" : " (read from GGUF files only)")}", nameof(format));
        }
    }

    /// <summary>Decodes <paramref name="encoded"/> into <paramref name="values"/> (a whole number of blocks).</summary>
    public static void Decode(WeightFormat format, ReadOnlySpan<byte> encoded, Span<float> values)
    {
        CheckSizes(format, values.Length, encoded.Length, nameof(encoded));
        if (values.Length == 0) return;
        fixed (byte* src = encoded)
        fixed (float* dst = values)
            Decode(format, src, dst, values.Length);
    }

    /// <summary>bfloat16 of <paramref name="value"/>, rounded to nearest even (NaN stays a quiet NaN), as PyTorch converts.</summary>
    public static ushort ToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)(bits >> 16 | 0x40);
        return (ushort)((bits + 0x7FFF + (bits >> 16 & 1)) >> 16);
    }

    /// <summary>
    /// Decodes <paramref name="count"/> values (whole blocks) at <paramref name="src"/> into <paramref name="dst"/>:
    /// the kernels' entry, unchecked.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Decode(WeightFormat format, byte* src, float* dst, int count)
    {
        switch (format)
        {
            case WeightFormat.F16: DecodeHalf((ushort*)src, dst, count); break;
            case WeightFormat.BF16: DecodeBFloat16((ushort*)src, dst, count); break;
            case WeightFormat.Q8_0: DecodeQ8(src, dst, count / QuantBlocks.BlockSize); break;
            case WeightFormat.Q4_0: DecodeQ4(src, dst, count / QuantBlocks.BlockSize); break;
            case WeightFormat.NF4: DecodeNf4(src, dst, count / Nf4Blocks.BlockSize); break;
            case WeightFormat.Q4_K:
                KQuantBlocks.DecodeQ4K(new ReadOnlySpan<byte>(src, count / KQuantBlocks.BlockSize * KQuantBlocks.Q4KBytes), new Span<float>(dst, count));
                break;
            case WeightFormat.Q6_K:
                KQuantBlocks.DecodeQ6K(new ReadOnlySpan<byte>(src, count / KQuantBlocks.BlockSize * KQuantBlocks.Q6KBytes), new Span<float>(dst, count));
                break;
            default: throw new ArgumentException($"format: expected F16, BF16, Q8_0, Q4_0, NF4, Q4_K or Q6_K to decode; got {format}", nameof(format));
        }
    }

    private static void DecodeBFloat16(ushort* src, float* dst, int count)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i + 32 <= count; i += 32)
            {
                var (lo, hi) = Vector512.Widen(Vector512.Load(src + i));
                Vector512.Store(Vector512.ShiftLeft(lo, 16).AsSingle(), dst + i);
                Vector512.Store(Vector512.ShiftLeft(hi, 16).AsSingle(), dst + i + 16);
            }
        if (Vector256.IsHardwareAccelerated)
            for (; i + 16 <= count; i += 16)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Load(src + i));
                Vector256.Store(Vector256.ShiftLeft(lo, 16).AsSingle(), dst + i);
                Vector256.Store(Vector256.ShiftLeft(hi, 16).AsSingle(), dst + i + 8);
            }
        for (; i < count; i++) dst[i] = BitConverter.UInt32BitsToSingle((uint)src[i] << 16);
    }

    /// <summary>F16 to float32 with <see cref="HalfToSingle(ushort)"/>'s integer steps, 16 or 8 at a time (finite values exact).</summary>
    private static void DecodeHalf(ushort* src, float* dst, int count)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var magnitude = Vector512.Create(0x7FFFu);
            var sign = Vector512.Create(0x8000u);
            var scale = Vector512.Create(5.192296858534828e33f);
            for (; i + 32 <= count; i += 32)
            {
                var (lo, hi) = Vector512.Widen(Vector512.Load(src + i));
                Vector512.Store(HalfToSingle(lo, magnitude, sign, scale), dst + i);
                Vector512.Store(HalfToSingle(hi, magnitude, sign, scale), dst + i + 16);
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var magnitude = Vector256.Create(0x7FFFu);
            var sign = Vector256.Create(0x8000u);
            var scale = Vector256.Create(5.192296858534828e33f);
            for (; i + 16 <= count; i += 16)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Load(src + i));
                Vector256.Store(((Vector256.ShiftLeft(lo & magnitude, 13).AsSingle() * scale).AsUInt32() | Vector256.ShiftLeft(lo & sign, 16)).AsSingle(), dst + i);
                Vector256.Store(((Vector256.ShiftLeft(hi & magnitude, 13).AsSingle() * scale).AsUInt32() | Vector256.ShiftLeft(hi & sign, 16)).AsSingle(), dst + i + 8);
            }
        }
        for (; i < count; i++) dst[i] = HalfToSingle(src[i]);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> HalfToSingle(Vector512<uint> bits, Vector512<uint> magnitude, Vector512<uint> sign, Vector512<float> scale) =>
        ((Vector512.ShiftLeft(bits & magnitude, 13).AsSingle() * scale).AsUInt32() | Vector512.ShiftLeft(bits & sign, 16)).AsSingle();

    private static float Half16(byte* p) => HalfToSingle(Unsafe.ReadUnaligned<ushort>(p));

    /// <summary>
    /// A finite F16 as float32, exactly, in a few integer operations (the runtime's Half conversion is a slow generic
    /// path, paid once per block of a decode step): the magnitude's bits moved into float32's fields and rescaled by
    /// 2¹¹², which renormalises subnormals too; then the sign. Infinities and NaNs (no scale holds them) come out finite.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float HalfToSingle(ushort h)
    {
        float magnitude = BitConverter.UInt32BitsToSingle((uint)(h & 0x7FFF) << 13) * 5.192296858534828e33f; // 2^112
        return BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(magnitude) | (uint)(h & 0x8000) << 16);
    }

    private static void DecodeQ8(byte* src, float* dst, int blocks)
    {
        const int size = 2 + QuantBlocks.BlockSize;
        for (int b = 0; b < blocks; b++, src += size, dst += QuantBlocks.BlockSize)
        {
            float d = Half16(src);
            sbyte* q = (sbyte*)(src + 2);
            if (Avx512F.IsSupported)
            {
                var scale = Vector512.Create(d);
                Vector512.Store(Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(q))) * scale, dst);
                Vector512.Store(Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(q + 16))) * scale, dst + 16);
            }
            else if (Avx2.IsSupported)
            {
                var scale = Vector256.Create(d);
                for (int i = 0; i < QuantBlocks.BlockSize; i += 8)
                    Vector256.Store(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q + i)) * scale, dst + i);
            }
            else
                for (int i = 0; i < QuantBlocks.BlockSize; i++) dst[i] = d * q[i];
        }
    }

    private static void DecodeQ4(byte* src, float* dst, int blocks)
    {
        const int size = 2 + QuantBlocks.BlockSize / 2;
        for (int b = 0; b < blocks; b++, src += size, dst += QuantBlocks.BlockSize)
        {
            float d = Half16(src);
            byte* q = src + 2;
            if (Avx512F.IsSupported)
            {
                var packed = Vector128.Load(q);
                var lo = Avx512F.ConvertToVector512Int32(packed & Vector128.Create((byte)0x0F)) - Vector512.Create(8);
                var hi = Avx512F.ConvertToVector512Int32(Vector128.ShiftRightLogical(packed, 4)) - Vector512.Create(8);
                var scale = Vector512.Create(d);
                Vector512.Store(Avx512F.ConvertToVector512Single(lo) * scale, dst);
                Vector512.Store(Avx512F.ConvertToVector512Single(hi) * scale, dst + 16);
            }
            else
                for (int i = 0; i < QuantBlocks.BlockSize / 2; i++)
                {
                    dst[i] = d * ((q[i] & 0x0F) - 8);
                    dst[i + QuantBlocks.BlockSize / 2] = d * ((q[i] >> 4) - 8);
                }
        }
    }

    private static void DecodeNf4(byte* src, float* dst, int blocks)
    {
        ref float code = ref MemoryMarshal.GetReference(Nf4Blocks.CodeBook);
        var table = Vector512.LoadUnsafe(ref code);
        for (int b = 0; b < blocks; b++, src += WeightFormats.Nf4BlockBytes, dst += Nf4Blocks.BlockSize)
        {
            float m = Unsafe.ReadUnaligned<float>(src);
            byte* q = src + 4;
            if (Avx512F.IsSupported)
            {
                // Byte i holds weights 2i (high nibble) and 2i + 1 (low): split each 8 bytes into 16 indices in that order.
                var scale = Vector512.Create(m);
                for (int i = 0; i < Nf4Blocks.BlockSize / 2; i += 8)
                {
                    var bytes = Avx512F.ConvertToVector512Int32(Vector128.Create(Unsafe.ReadUnaligned<ulong>(q + i), 0UL).AsByte());
                    // lanes 0..7 hold bytes 0..7 (the rest are zero): interleave high and low nibbles into 16 indices.
                    var spread = Avx512F.PermuteVar16x32(bytes, Vector512.Create(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7));
                    var shift = Vector512.Create(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0).AsUInt32();
                    var index = Avx512F.ShiftRightLogicalVariable(spread.AsUInt32(), shift).AsInt32() & Vector512.Create(0x0F);
                    Vector512.Store(Avx512F.PermuteVar16x32(table, index) * scale, dst + 2 * i);
                }
            }
            else
            {
                var book = Nf4Blocks.CodeBook;
                for (int i = 0; i < Nf4Blocks.BlockSize / 2; i++)
                {
                    dst[2 * i] = book[q[i] >> 4] * m;
                    dst[2 * i + 1] = book[q[i] & 0x0F] * m;
                }
            }
        }
    }

    private static void CheckSizes(WeightFormat format, int count, int bytes, string name)
    {
        if (format == WeightFormat.F32)
            throw new ArgumentException("format: F32 weights are plain float tensors, not encoded rows", nameof(format));
        if (count % format.BlockValues() != 0)
            throw new ArgumentException($"values: {format} holds whole blocks of {format.BlockValues()} values; got {count}", "values");
        long expected = (long)count / format.BlockValues() * format.BlockBytes();
        if (bytes != expected)
            throw new ArgumentException($"{name}: {count} values take {expected} bytes of {format}; got {bytes}", name);
    }
}

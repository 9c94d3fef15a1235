namespace LoraRuntime.Quantization;

/// <summary>
/// bitsandbytes' 8-bit blockwise quantization with its signed dynamic map, which its double quantization
/// (<c>bnb_4bit_use_double_quant</c>, QLoRA's recipe) applies to the NF4 blocks' absmax: the absmax values less their
/// mean (the offset), in blocks of 256, each block scaled by its own absolute maximum and rounded to the nearest of 256
/// code values; read back as code[q]·blockmax + offset in float32. <see cref="Quantize"/> computes what bitsandbytes'
/// CUDA kernel (kQuantizeBlockwise) computes: x·(1/blockmax) in float32, placed by its binary search among the code
/// values, a value at a midpoint going to the code value the search ended on. Nothing here allocates.
/// </summary>
public static class DynamicBlocks
{
    /// <summary>Absmax values a nested block holds (bitsandbytes' double quantization uses 256).</summary>
    public const int NestedBlockSize = 256;

    /// <summary>
    /// The 256 code values, ascending, as float32 bits: bitsandbytes' <c>create_dynamic_map(signed=True)</c> as
    /// PyTorch 1.13 computes it on the CPU (its float32 linspace; other PyTorch builds may differ from it in the last
    /// bit of a few values, which is why bitsandbytes saves the map beside the codes, and why a checkpoint's own map
    /// is what its reader uses).
    /// </summary>
    public static ReadOnlySpan<uint> CodeBits =>
    [
        0xBF7E3333, 0xBF7A9999, 0xBF770000, 0xBF736666, 0xBF6FCCCC, 0xBF6C3333, 0xBF68999A, 0xBF650000,
        0xBF616666, 0xBF5DCCCC, 0xBF5A3333, 0xBF569999, 0xBF530000, 0xBF4F6666, 0xBF4BCCCC, 0xBF483333,
        0xBF44999A, 0xBF410000, 0xBF3D6667, 0xBF39CCCD, 0xBF363334, 0xBF32999A, 0xBF2F0000, 0xBF2B6667,
        0xBF27CCCD, 0xBF243333, 0xBF20999A, 0xBF1D0000, 0xBF196666, 0xBF15CCCD, 0xBF123334, 0xBF0E999A,
        0xBF0B0000, 0xBF076666, 0xBF03CCCD, 0xBF003333, 0xBEF93334, 0xBEF20000, 0xBEEACCCC, 0xBEE3999A,
        0xBEDC6666, 0xBED53332, 0xBECE0000, 0xBEC6CCCC, 0xBEBF999A, 0xBEB86666, 0xBEB13332, 0xBEAA0000,
        0xBEA2CCCC, 0xBE9B999A, 0xBE946666, 0xBE8D3334, 0xBE860000, 0xBE7D999A, 0xBE6F3334, 0xBE60CCCD,
        0xBE526666, 0xBE440000, 0xBE359999, 0xBE273333, 0xBE18CCCD, 0xBE0A6666, 0xBDF80000, 0xBDDB3334,
        0xBDC9EB85, 0xBDC428F5, 0xBDBE6667, 0xBDB8A3D7, 0xBDB2E148, 0xBDAD1EB8, 0xBDA75C28, 0xBDA1999A,
        0xBD9BD70A, 0xBD96147B, 0xBD9051EB, 0xBD8A8F5D, 0xBD84CCCD, 0xBD7E147A, 0xBD728F5D, 0xBD670A3D,
        0xBD5B851F, 0xBD500000, 0xBD447AE1, 0xBD38F5C3, 0xBD2D70A3, 0xBD21EB85, 0xBD166667, 0xBD0AE147,
        0xBCFEB852, 0xBCE7AE13, 0xBCD0A3D7, 0xBCB9999A, 0xBCA28F5C, 0xBC8B851F, 0xBC68F5C3, 0xBC3AE148,
        0xBC1F3B64, 0xBC160418, 0xBC0CCCCD, 0xBC039581, 0xBBF4BC6A, 0xBBE24DD3, 0xBBCFDF3B, 0xBBBD70A4,
        0xBBAB020D, 0xBB989374, 0xBB8624DD, 0xBB676C8A, 0xBB428F5C, 0xBB1DB22D, 0xBAF1A9FC, 0xBAA7EF9D,
        0xBA7765FF, 0xBA59E83E, 0xBA3C6A80, 0xBA1EECC1, 0xBA016F01, 0xB9C7E283, 0xB98CE705, 0xB923D70B,
        0xB8BA1F4B, 0xB88AEFB3, 0xB8378034, 0xB7B24206, 0xB70205FF, 0xB65A1A94, 0xB513A3B7, 0x00000000,
        0x3513A3B7, 0x365A1A94, 0x370205FF, 0x37B24206, 0x38378034, 0x388AEFB3, 0x38BA1F4B, 0x3923D70B,
        0x398CE705, 0x39C7E283, 0x3A016F01, 0x3A1EECC1, 0x3A3C6A80, 0x3A59E83E, 0x3A7765FF, 0x3AA7EF9D,
        0x3AF1A9FC, 0x3B1DB22D, 0x3B428F5C, 0x3B676C8A, 0x3B8624DD, 0x3B989374, 0x3BAB020D, 0x3BBD70A4,
        0x3BCFDF3B, 0x3BE24DD3, 0x3BF4BC6A, 0x3C039581, 0x3C0CCCCD, 0x3C160418, 0x3C1F3B64, 0x3C3AE148,
        0x3C68F5C3, 0x3C8B851F, 0x3CA28F5C, 0x3CB9999A, 0x3CD0A3D7, 0x3CE7AE13, 0x3CFEB852, 0x3D0AE147,
        0x3D166667, 0x3D21EB85, 0x3D2D70A3, 0x3D38F5C3, 0x3D447AE1, 0x3D500000, 0x3D5B851F, 0x3D670A3D,
        0x3D728F5D, 0x3D7E147A, 0x3D84CCCD, 0x3D8A8F5D, 0x3D9051EB, 0x3D96147B, 0x3D9BD70A, 0x3DA1999A,
        0x3DA75C28, 0x3DAD1EB8, 0x3DB2E148, 0x3DB8A3D7, 0x3DBE6667, 0x3DC428F5, 0x3DC9EB85, 0x3DDB3334,
        0x3DF80000, 0x3E0A6666, 0x3E18CCCD, 0x3E273333, 0x3E359999, 0x3E440000, 0x3E526666, 0x3E60CCCD,
        0x3E6F3334, 0x3E7D999A, 0x3E860000, 0x3E8D3334, 0x3E946666, 0x3E9B999A, 0x3EA2CCCC, 0x3EAA0000,
        0x3EB13332, 0x3EB86666, 0x3EBF999A, 0x3EC6CCCC, 0x3ECE0000, 0x3ED53332, 0x3EDC6666, 0x3EE3999A,
        0x3EEACCCC, 0x3EF20000, 0x3EF93334, 0x3F003333, 0x3F03CCCD, 0x3F076666, 0x3F0B0000, 0x3F0E999A,
        0x3F123334, 0x3F15CCCD, 0x3F196666, 0x3F1D0000, 0x3F20999A, 0x3F243333, 0x3F27CCCD, 0x3F2B6667,
        0x3F2F0000, 0x3F32999A, 0x3F363334, 0x3F39CCCD, 0x3F3D6667, 0x3F410000, 0x3F44999A, 0x3F483333,
        0x3F4BCCCC, 0x3F4F6666, 0x3F530000, 0x3F569999, 0x3F5A3333, 0x3F5DCCCC, 0x3F616666, 0x3F650000,
        0x3F68999A, 0x3F6C3333, 0x3F6FCCCC, 0x3F736666, 0x3F770000, 0x3F7A9999, 0x3F7E3333, 0x3F800000,
    ];

    /// <summary>Code value <paramref name="index"/>.</summary>
    public static float Code(int index) => BitConverter.UInt32BitsToSingle(CodeBits[index]);

    /// <summary>Blocks of <paramref name="blockSize"/> that <paramref name="count"/> values make (the last may be partial).</summary>
    public static int Blocks(int count, int blockSize) => (int)(((long)count + blockSize - 1) / blockSize);

    /// <summary>
    /// Quantizes <paramref name="values"/> in blocks of <paramref name="blockSize"/> (the last may be partial) into
    /// one code index a value and one float32 absolute maximum a block.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> values, int blockSize, Span<byte> codes, Span<float> absmax)
    {
        Check(values.Length, blockSize, codes.Length, absmax.Length);
        for (int b = 0, at = 0; at < values.Length; b++, at += blockSize)
        {
            var x = values.Slice(at, Math.Min(blockSize, values.Length - at));
            float max = 0f;
            foreach (float v in x) max = MathF.Max(max, MathF.Abs(v));
            absmax[b] = max;
            float scale = 1f / max; // as the kernel: an all-zero block gives 0·∞ = NaN, which its search places at index 0 (code[0]·0 = 0)
            for (int i = 0; i < x.Length; i++) codes[at + i] = Nearest(x[i] * scale);
        }
    }

    /// <summary><paramref name="values"/>[i] = code[codes[i]]·absmax[i / blockSize], in float32.</summary>
    public static void Dequantize(ReadOnlySpan<byte> codes, ReadOnlySpan<float> absmax, int blockSize, Span<float> values)
    {
        Check(values.Length, blockSize, codes.Length, absmax.Length);
        for (int i = 0; i < values.Length; i++) values[i] = Code(codes[i]) * absmax[i / blockSize];
    }

    /// <summary>
    /// Replaces NF4 blocks' <paramref name="absmax"/> (a whole weight's, in its row-major order) with what bitsandbytes'
    /// double quantization gives back: offset = their mean, the differences quantized in blocks of
    /// <see cref="NestedBlockSize"/>, then code[q]·blockmax + offset. Returns the offset: the exact mean rounded to
    /// float32, where PyTorch's float32 reduction may land a unit in the last place away (so may the values then).
    /// </summary>
    public static float DoubleQuantize(Span<float> absmax)
    {
        double sum = 0;
        foreach (float a in absmax) sum += a;
        float offset = absmax.IsEmpty ? 0f : (float)(sum / absmax.Length);
        DoubleQuantize(absmax, offset);
        return offset;
    }

    /// <summary><see cref="DoubleQuantize(Span{float})"/> about a given <paramref name="offset"/> (bitsandbytes' mean as PyTorch computed it).</summary>
    public static void DoubleQuantize(Span<float> absmax, float offset)
    {
        Span<byte> codes = stackalloc byte[NestedBlockSize];
        Span<float> centred = stackalloc float[NestedBlockSize];
        Span<float> blockMax = stackalloc float[1];
        for (int at = 0; at < absmax.Length; at += NestedBlockSize)
        {
            var slice = absmax.Slice(at, Math.Min(NestedBlockSize, absmax.Length - at));
            var c = centred[..slice.Length];
            for (int i = 0; i < slice.Length; i++) c[i] = slice[i] - offset;
            Quantize(c, NestedBlockSize, codes[..slice.Length], blockMax);
            Dequantize(codes[..slice.Length], blockMax, NestedBlockSize, slice);
            for (int i = 0; i < slice.Length; i++) slice[i] += offset;
        }
    }

    /// <summary>
    /// The index bitsandbytes' dQuantize gives <paramref name="x"/>: a binary search from index 127 in steps of 64 down
    /// to 1 that remembers the nearest code values passed below and above, then the nearer of the last two by their
    /// float32 midpoint.
    /// </summary>
    private static byte Nearest(float x)
    {
        int pivot = 127, upperPivot = 255, lowerPivot = 0;
        float lower = -1f, upper = 1f, value = Code(pivot);
        for (int step = 64; step > 0; step >>= 1)
        {
            if (x > value)
            {
                lowerPivot = pivot;
                lower = value;
                pivot += step;
            }
            else
            {
                upperPivot = pivot;
                upper = value;
                pivot -= step;
            }
            value = Code(pivot);
        }
        if (upperPivot == 255) upper = Code(upperPivot);
        if (lowerPivot == 0) lower = Code(lowerPivot);
        if (x > value) return (byte)(x > (upper + value) * 0.5f ? upperPivot : pivot);
        return (byte)(x < (lower + value) * 0.5f ? lowerPivot : pivot);
    }

    private static void Check(int count, int blockSize, int codes, int blocks)
    {
        if (blockSize < 1) throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, "blockSize: expected at least 1");
        if (codes != count) throw new ArgumentException($"codes: expected one a value ({count}); got {codes}", nameof(codes));
        if (blocks != Blocks(count, blockSize))
            throw new ArgumentException($"absmax: {count} values in blocks of {blockSize} have {Blocks(count, blockSize)} blocks; got {blocks}", "absmax");
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using LoraRuntime.Quantization;

namespace LoraRuntime.Cpu.Quantized;

/// <summary>
/// Activation rows quantized to Q8_0 as llama.cpp's CPU path quantizes them for a Q8_0 or Q4_0 weight: per block of
/// 32, d = max|x| / 127 and q = round(x / d) (to even), kept as int8 quants [rows, K], and per block a pair (−offset·Σq
/// as int32, d rounded to F16 as llama.cpp stores it, as float32) [rows, K / 32]. The offset is the weight's (128 for
/// Q8_0, 8 for Q4_0: <see cref="Int8Panel.Offset"/>): the generated kernels start a block's integer sum at the
/// compensation, and the Q4_0 row kernel subtracts it. One layout for the row kernels (<see cref="QuantizedDot"/>) and
/// the generated ones (<see cref="Int8Kernels"/>, which read the pairs as <see cref="Int8Kernels.MetaBytes"/> apart).
/// </summary>
internal unsafe struct Q8Activations
{
    public sbyte* Quants;   // [rows, K]
    public byte* Meta;      // [rows, K / 32] pairs (int compensation, float scale)
    public int Blocks;      // K / 32

    /// <summary>Bytes between two rows' pairs.</summary>
    public readonly long MetaStride => (long)Blocks * Int8Kernels.MetaBytes;

    public static long BytesFor(int rows, int k) => (long)rows * k + (long)rows * (k / QuantBlocks.BlockSize) * Int8Kernels.MetaBytes;

    /// <summary>The layout of <paramref name="rows"/> rows of K in <paramref name="memory"/> (<see cref="BytesFor"/> bytes).</summary>
    public static Q8Activations In(byte* memory, int rows, int k) =>
        new() { Quants = (sbyte*)memory, Meta = memory + (long)rows * k, Blocks = k / QuantBlocks.BlockSize };

    /// <summary>The same layout from row <paramref name="row"/> on.</summary>
    public readonly Q8Activations FromRow(int row) =>
        new() { Quants = Quants + (long)row * Blocks * QuantBlocks.BlockSize, Meta = Meta + row * MetaStride, Blocks = Blocks };

    /// <summary>Block <paramref name="block"/>'s scale (F16-rounded d) of row <paramref name="row"/>.</summary>
    public readonly float Scale(int row, int block) => ((float*)(Meta + row * MetaStride))[2 * block + 1];

    /// <summary>Block <paramref name="block"/>'s compensation (−offset·Σq) of row <paramref name="row"/>.</summary>
    public readonly int Compensation(int row, int block) => ((int*)(Meta + row * MetaStride))[2 * block];

    /// <summary>Quantizes rows <paramref name="firstRow"/>…<paramref name="endRow"/> of <paramref name="x"/> (row stride <paramref name="ldx"/>).</summary>
    public readonly void Quantize(float* x, int ldx, int firstRow, int endRow, int offset)
    {
        int k = Blocks * QuantBlocks.BlockSize;
        for (int r = firstRow; r < endRow; r++)
        {
            int* pairs = (int*)(Meta + r * MetaStride);
            for (int b = 0; b < Blocks; b++)
            {
                int sum = QuantizeBlock(x + (long)r * ldx + b * QuantBlocks.BlockSize, Quants + (long)r * k + b * QuantBlocks.BlockSize, out float scale);
                pairs[2 * b] = -offset * sum;
                ((float*)pairs)[2 * b + 1] = scale;
            }
        }
    }

    /// <summary>
    /// One block of 32: q = round(x·id) to even with d = max|x| / 127 and id = 1 / d (0 for an all-zero block); returns
    /// Σq, and d rounded to F16 (llama.cpp keeps an activation block's scale as F16, as the weights') in <paramref name="scale"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int QuantizeBlock(float* x, sbyte* q, out float scale)
    {
        float d;
        if (Avx512F.IsSupported)
        {
            var v0 = Vector512.Load(x);
            var v1 = Vector512.Load(x + 16);
            var m16 = Vector512.Max(Vector512.Abs(v0), Vector512.Abs(v1));
            var m8 = Vector256.Max(m16.GetLower(), m16.GetUpper());
            var m4 = Vector128.Max(m8.GetLower(), m8.GetUpper());
            float amax = MathF.Max(MathF.Max(m4.GetElement(0), m4.GetElement(1)), MathF.Max(m4.GetElement(2), m4.GetElement(3)));
            d = amax / 127f;
            var id = Vector512.Create(d != 0 ? 1f / d : 0f);
            // vcvtps2dq rounds to nearest even (the default rounding mode), as MathF.Round(…, ToEven).
            var q0 = Avx512F.ConvertToVector512Int32(v0 * id);
            var q1 = Avx512F.ConvertToVector512Int32(v1 * id);
            Avx512F.ConvertToVector128SByte(q0).Store(q);
            Avx512F.ConvertToVector128SByte(q1).Store(q + 16);
            scale = (float)(Half)d;
            return Vector512.Sum(q0 + q1);
        }
        float max = 0;
        for (int i = 0; i < QuantBlocks.BlockSize; i++) max = MathF.Max(max, MathF.Abs(x[i]));
        d = max / 127f;
        float inverse = d != 0 ? 1f / d : 0f;
        int total = 0;
        for (int i = 0; i < QuantBlocks.BlockSize; i++)
        {
            int value = (int)MathF.Round(x[i] * inverse, MidpointRounding.ToEven);
            q[i] = (sbyte)value;
            total += value;
        }
        scale = (float)(Half)d;
        return total;
    }
}

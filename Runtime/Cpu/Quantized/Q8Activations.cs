using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using LoraRuntime.Quantization;

namespace LoraRuntime.Cpu.Quantized;

/// <summary>
/// Activation rows quantized to Q8_0 as llama.cpp's CPU path quantizes them for a Q8_0 or Q4_0 weight: per block of
/// 32, d = max|x| / 127 and q = round(x / d) (to even), kept as int8 quants, scales rounded to F16 as llama.cpp stores
/// them and, for Q4_0's offset of 8, 8·d·Σq. The layout of the row kernels (<see cref="QuantizedDot"/>); the generated
/// kernels take <see cref="QuantizeForKernels"/>'s.
/// </summary>
internal unsafe struct Q8Activations
{
    public sbyte* Quants;   // [rows, K]
    public float* Scales;   // [rows, K / 32]
    public float* Offsets;  // [rows, K / 32]: 8 · d · Σ q
    public int Blocks;      // K / 32

    public static long BytesFor(int rows, int k) => (long)rows * k + 2L * rows * (k / QuantBlocks.BlockSize) * sizeof(float);

    /// <summary>Quantizes <paramref name="rows"/> rows of K at <paramref name="x"/> (row stride <paramref name="ldx"/>) into <paramref name="memory"/>.</summary>
    public static Q8Activations Quantize(float* x, int ldx, int rows, int k, byte* memory)
    {
        int blocks = k / QuantBlocks.BlockSize;
        var q = new Q8Activations { Quants = (sbyte*)memory, Scales = (float*)(memory + (long)rows * k), Blocks = blocks };
        q.Offsets = q.Scales + (long)rows * blocks;
        for (int r = 0; r < rows; r++)
            for (int b = 0; b < blocks; b++)
            {
                int sum = QuantizeBlock(x + (long)r * ldx + b * QuantBlocks.BlockSize, q.Quants + (long)r * k + b * QuantBlocks.BlockSize, out float d);
                // llama.cpp keeps an activation block's scale as F16, as the weights'.
                float stored = (float)(Half)d;
                q.Scales[(long)r * blocks + b] = stored;
                q.Offsets[(long)r * blocks + b] = 8f * stored * sum;
            }
        return q;
    }

    /// <summary>
    /// Rows <paramref name="firstRow"/>…<paramref name="endRow"/> quantized for <see cref="Int8Kernels"/>: quants
    /// [rows, K] at <paramref name="quants"/>, and per block the pair (−<paramref name="offset"/>·Σq as int32, the F16
    /// scale as float32) at <paramref name="meta"/> [rows, K / 32, 2].
    /// </summary>
    public static void QuantizeForKernels(float* x, int ldx, int firstRow, int endRow, int k, int offset, sbyte* quants, byte* meta)
    {
        int blocks = k / QuantBlocks.BlockSize;
        for (int r = firstRow; r < endRow; r++)
        {
            byte* pairs = meta + (long)r * blocks * Int8Kernels.MetaBytes;
            for (int b = 0; b < blocks; b++)
            {
                int sum = QuantizeBlock(x + (long)r * ldx + b * QuantBlocks.BlockSize, quants + (long)r * k + b * QuantBlocks.BlockSize, out float d);
                ((int*)pairs)[2 * b] = -offset * sum;
                ((float*)pairs)[2 * b + 1] = (float)(Half)d;
            }
        }
    }

    /// <summary>One block of 32: q = round(x·id) to even with d = max|x| / 127 and id = 1 / d (0 for an all-zero block); returns Σq.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int QuantizeBlock(float* x, sbyte* q, out float d)
    {
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
        return total;
    }
}

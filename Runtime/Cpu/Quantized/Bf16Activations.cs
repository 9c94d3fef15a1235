using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using LoraRuntime.Quantization;

namespace LoraRuntime.Cpu.Quantized;

/// <summary>
/// Activations rounded to bfloat16 (to nearest even; a NaN stays a quiet NaN: <see cref="WeightRows.ToBFloat16"/>),
/// as the BF16 inference product multiplies them: into zero-padded bfloat16 rows for <see cref="Bf16Kernels"/>, or back
/// to float32 values for the float product where those kernels do not run.
/// </summary>
internal static unsafe class Bf16Activations
{
    /// <summary>
    /// Rows [<paramref name="first"/>, <paramref name="end"/>) of A (<paramref name="k"/> values at stride
    /// <paramref name="lda"/>) as bfloat16 rows of <paramref name="ld"/> ≥ k values, zero past k.
    /// </summary>
    public static void Round(float* a, int lda, int first, int end, int k, ushort* dst, int ld)
    {
        for (int i = first; i < end; i++)
        {
            float* x = a + (long)i * lda;
            ushort* y = dst + (long)i * ld;
            int j = 0;
            if (Avx512F.IsSupported)
                for (; j + 16 <= k; j += 16) Avx512F.ConvertToVector256UInt16(Rounded(Vector512.Load(x + j))).Store(y + j);
            for (; j < k; j++) y[j] = WeightRows.ToBFloat16(x[j]);
            for (; j < ld; j++) y[j] = 0;
        }
    }

    /// <summary>Rows of A rounded through bfloat16, as float32 rows of <paramref name="k"/> at <paramref name="dst"/>.</summary>
    public static void RoundToSingle(float* a, int lda, int rows, int k, float* dst)
    {
        for (int i = 0; i < rows; i++)
        {
            float* x = a + (long)i * lda, y = dst + (long)i * k;
            int j = 0;
            if (Vector512.IsHardwareAccelerated)
                for (; j + 16 <= k; j += 16) Vector512.ShiftLeft(Rounded(Vector512.Load(x + j)), 16).AsSingle().Store(y + j);
            if (Vector256.IsHardwareAccelerated)
                for (; j + 8 <= k; j += 8) Vector256.ShiftLeft(Rounded(Vector256.Load(x + j)), 16).AsSingle().Store(y + j);
            for (; j < k; j++) y[j] = BitConverter.UInt32BitsToSingle((uint)WeightRows.ToBFloat16(x[j]) << 16);
        }
    }

    /// <summary>The bfloat16 bits of each lane, in the low half of a dword.</summary>
    private static Vector512<uint> Rounded(Vector512<float> x)
    {
        var bits = x.AsUInt32();
        var nearest = Vector512.ShiftRightLogical(bits + Vector512.Create(0x7FFFu) + (Vector512.ShiftRightLogical(bits, 16) & Vector512<uint>.One), 16);
        var quiet = Vector512.ShiftRightLogical(bits, 16) | Vector512.Create(0x40u);
        return Vector512.ConditionalSelect(Vector512.Equals(x, x).AsUInt32(), nearest, quiet);
    }

    /// <inheritdoc cref="Rounded(Vector512{float})"/>
    private static Vector256<uint> Rounded(Vector256<float> x)
    {
        var bits = x.AsUInt32();
        var nearest = Vector256.ShiftRightLogical(bits + Vector256.Create(0x7FFFu) + (Vector256.ShiftRightLogical(bits, 16) & Vector256<uint>.One), 16);
        var quiet = Vector256.ShiftRightLogical(bits, 16) | Vector256.Create(0x40u);
        return Vector256.ConditionalSelect(Vector256.Equals(x, x).AsUInt32(), nearest, quiet);
    }
}

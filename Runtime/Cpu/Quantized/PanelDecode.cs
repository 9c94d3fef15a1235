using System.Runtime.Intrinsics.X86;
using LoraRuntime.Cpu.Gemm;

namespace LoraRuntime.Cpu.Quantized;

/// <summary>
/// Decodes a depth block of NR stored weight rows straight into a GEMM panel (kc × NR, the micro-kernel's B layout):
/// eight rows × eight values at a time, widened in registers and transposed there (<see cref="RegisterTranspose"/>), so
/// the weight goes from its rows to the panel with no float row buffer between. BF16 only: it widens exactly with one
/// shift, and this took the SmolLM2-135M-shaped prefill of 32 tokens from 83 to 63 ms. The same register path for
/// Q8_0, Q4_0 and NF4 (dequantizing each 8×8 tile before its transpose) measured no faster than decoding rows with the
/// 512-bit row decoder and packing them (Q8_0 slower, 78–82 against 91–93 ms), so those keep that path. Needs AVX2; the
/// caller decodes rows and packs them where this returns false.
/// </summary>
internal static unsafe class PanelDecode
{
    /// <summary>
    /// Decodes depth [<paramref name="pc"/>, + kc) of the <paramref name="nr"/> rows at <paramref name="rows"/> (each
    /// <paramref name="rowBytes"/> long) into the panel <paramref name="dst"/>; false (nothing written) where this format,
    /// shape or CPU has no register path.
    /// </summary>
    public static bool TryDecode(WeightFormat format, byte* rows, long rowBytes, int pc, int kc, int nr, float* dst)
    {
        if (format != WeightFormat.BF16 || !Avx2.IsSupported || nr % 8 != 0 || kc % 8 != 0) return false;
        for (int k = 0; k < kc; k += 8)
            for (int c = 0; c < nr; c += 8)
                RegisterTranspose.BFloat16Block8x8(rows + c * rowBytes + (pc + k) * 2L, (nint)rowBytes, dst + (long)k * nr + c, nr);
        return true;
    }
}

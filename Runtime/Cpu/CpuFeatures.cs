using Arm = System.Runtime.Intrinsics.Arm;
using X86 = System.Runtime.Intrinsics.X86;

namespace LoraRuntime.Cpu;

/// <summary>
/// The SIMD features the CPU kernels can use on this machine, as the JIT (or the AOT compiler's target) sees
/// them, and the threads they run on. For <c>lora info</c> and benchmark reports.
/// </summary>
public static class CpuFeatures
{
    /// <summary>512-bit vectors are accelerated (AVX-512 on x64).</summary>
    public static bool Vector512 => System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated;

    /// <summary>256-bit vectors are accelerated (AVX2 on x64).</summary>
    public static bool Vector256 => System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated;

    /// <summary>128-bit vectors are accelerated (SSE or AdvSimd).</summary>
    public static bool Vector128 => System.Runtime.Intrinsics.Vector128.IsHardwareAccelerated;

    /// <summary>AVX-512 Foundation.</summary>
    public static bool Avx512F => X86.Avx512F.IsSupported;

    /// <summary>AVX-512 VNNI (the 512-bit int8 dot products; CPUID, since .NET exposes them only through AVX10).</summary>
    public static bool Avx512Vnni => Quantized.Int8Kernels.CpuHasAvx512Vnni;

    /// <summary>AVX-512 BF16 (<c>vdpbf16ps</c>), which the generated BF16 kernels use.</summary>
    public static bool Avx512Bf16 => Quantized.Bf16Kernels.CpuHasAvx512Bf16;

    /// <summary>AVX-VNNI (the VEX-encoded 256-bit int8 dot products).</summary>
    public static bool AvxVnni => X86.AvxVnni.IsSupported;

    /// <summary>AVX2.</summary>
    public static bool Avx2 => X86.Avx2.IsSupported;

    /// <summary>Fused multiply-add (FMA3).</summary>
    public static bool Fma => X86.Fma.IsSupported;

    /// <summary>Arm's Advanced SIMD (NEON).</summary>
    public static bool AdvSimd => Arm.AdvSimd.IsSupported;

    /// <summary>Logical processors the process may use.</summary>
    public static int LogicalCores => Environment.ProcessorCount;

    /// <summary>Threads of the shared worker pool, the caller included (<c>LORA_NUM_THREADS</c> or one per core).</summary>
    public static int WorkerThreads => CpuWorkerPool.Shared.ThreadCount;

    /// <summary>The supported features by name, widest first ("AVX-512F", "AVX2", "FMA", "Vector512", …).</summary>
    public static IReadOnlyList<string> Supported
    {
        get
        {
            var names = new List<string>();
            if (Avx512F) names.Add("AVX-512F");
            if (Avx512Vnni) names.Add("AVX-512 VNNI");
            if (Avx512Bf16) names.Add("AVX-512 BF16");
            if (AvxVnni) names.Add("AVX-VNNI");
            if (Avx2) names.Add("AVX2");
            if (Fma) names.Add("FMA");
            if (AdvSimd) names.Add("AdvSimd");
            if (Vector512) names.Add("Vector512");
            if (Vector256) names.Add("Vector256");
            if (Vector128) names.Add("Vector128");
            return names;
        }
    }

    /// <summary>The widest accelerated vector in bits (0 when none is).</summary>
    public static int VectorBits => Vector512 ? 512 : Vector256 ? 256 : Vector128 ? 128 : 0;
}

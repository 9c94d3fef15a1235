using LoraRuntime.Cpu;
using LoraRuntime.Cpu.Gemm;
using Xunit;

namespace LoraRuntime.Tests.Gemm;

/// <summary>One CPU backend per micro-kernel, each over a 3-thread pool so that work splits unevenly.</summary>
internal static class CpuBackends
{
    private static readonly CpuWorkerPool s_pool = new(3);
    private static readonly Dictionary<GemmKernelKind, CpuBackend> s_backends = [];

    public static CpuBackend For(GemmKernelKind kind)
    {
        lock (s_backends)
        {
            if (!s_backends.TryGetValue(kind, out var backend))
                s_backends[kind] = backend = new CpuBackend(s_pool, kind);
            return backend;
        }
    }

    public static void SkipUnlessSupported(GemmKernelKind kind) =>
        Assert.SkipUnless(GemmKernel.IsSupported(kind), $"this CPU cannot run the {kind} GEMM kernel");
}

public sealed class CpuAutoGemmConformance : GemmConformance
{
    protected override Backend Backend => CpuBackends.For(GemmKernelKind.Auto);
}

public sealed class CpuAvx512GemmConformance : GemmConformance
{
    public CpuAvx512GemmConformance() => CpuBackends.SkipUnlessSupported(GemmKernelKind.Avx512);
    protected override Backend Backend => CpuBackends.For(GemmKernelKind.Avx512);
}

public sealed class CpuAvx2GemmConformance : GemmConformance
{
    public CpuAvx2GemmConformance() => CpuBackends.SkipUnlessSupported(GemmKernelKind.Avx2);
    protected override Backend Backend => CpuBackends.For(GemmKernelKind.Avx2);
}

public sealed class CpuVector128GemmConformance : GemmConformance
{
    public CpuVector128GemmConformance() => CpuBackends.SkipUnlessSupported(GemmKernelKind.Vector128);
    protected override Backend Backend => CpuBackends.For(GemmKernelKind.Vector128);
}

public sealed class CpuScalarGemmConformance : GemmConformance
{
    protected override Backend Backend => CpuBackends.For(GemmKernelKind.Scalar);
}

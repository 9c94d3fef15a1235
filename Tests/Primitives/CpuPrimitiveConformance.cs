using LoraRuntime.Cpu;

namespace LoraRuntime.Tests.Primitives;

/// <summary>The primitive conformance suite on the CPU backend.</summary>
public sealed class CpuPrimitiveConformance : PrimitiveConformance
{
    /// <summary>Four threads whatever the machine, so that the parallel paths split work on every CI host.</summary>
    private static readonly CpuWorkerPool s_workers = new(4);

    protected override Backend CreateBackend() => new CpuBackend(s_workers);

    /// <summary>The CPU has fused attention kernels and the composed default: switched here, so that both are checked.</summary>
    protected override void UseComposedAttention() => ((CpuBackend)Backend).FusedAttention = false;
}

using LoraRuntime.Cpu;

namespace LoraRuntime.Tests.Linalg;

/// <summary>The linear-algebra conformance suite on the CPU backend.</summary>
public sealed class CpuLinalgConformance : LinalgConformance
{
    /// <summary>Three threads whatever the machine, so that the parallel GEMM and GEMV split work unevenly on every host.</summary>
    private static readonly CpuWorkerPool s_workers = new(3);

    protected override Backend CreateBackend() => new CpuBackend(s_workers);
}

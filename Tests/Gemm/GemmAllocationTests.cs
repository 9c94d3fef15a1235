using LoraRuntime.Cpu;
using Xunit;

namespace LoraRuntime.Tests.Gemm;

/// <summary>A warm GEMM call allocates no managed memory: plain, batched, grouped, packed, GEMV, narrow and parallel shapes.</summary>
public sealed class GemmAllocationTests
{
    [Fact]
    public void WarmCallsAllocateNothing()
    {
        using var cpu = new CpuBackend();
        using var a = cpu.FromArray(Support.Reference.Random(512 * 300, 1), 512, 300);
        using var b = cpu.FromArray(Support.Reference.Random(300 * 520, 2), 300, 520);
        using var c = cpu.Zeros(512, 520);
        using var narrow = cpu.Zeros(512, 16);
        using var row = cpu.Zeros(1, 520);
        var problems = new GemmProblem[]
        {
            new(c, a, b, 512, 520, 300),
            new(narrow, a, b, 512, 16, 300, Transpose.No, Transpose.No) { Ldb = 520 },
            new(row, a, b, 1, 520, 300),
        };
        var batched = new GemmProblem(c, a, b, 16, 16, 16) { Lda = 300, Ldb = 520, Ldc = 520 };
        using var packed = cpu.PackMatrix(b);

        void Calls()
        {
            cpu.Gemm(problems[0]);
            cpu.Gemm(problems[1]);
            cpu.Gemm(problems[2]);
            cpu.MatMul(c, a, b, beta: 1f);
            cpu.GemmStridedBatched(batched, 300 * 16, 16, 520 * 16 + 16, 8);
            cpu.GemmGrouped(problems);
            cpu.GemmPacked(512, 1f, a, 0, 300, packed, 0f, c, 0, 520);
            cpu.GemmPacked(32, 1f, a, 0, 300, packed, 1f, c, 0, 520);
            cpu.GemmPacked(1, 1f, a, 0, 300, packed, 0f, row, 0, 520);
        }

        Calls(); // warm: workspaces and scratch are reserved on first use
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 5; i++) Calls();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}

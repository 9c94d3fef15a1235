using LoraRuntime.Cpu;
using Xunit;

namespace LoraRuntime.Tests.Linalg;

/// <summary>The CPU linear algebra on small worker pools: the work it runs side by side finishes and is right.</summary>
public sealed class CpuLinalgThreadingTests
{
    [Fact]
    public async Task TwoLanesOnATwoThreadPoolFinish()
    {
        // The divide and conquer's halves and the two back-transforms run as lanes side by side; a nested hand-off to
        // the (re-entrant) pool from inside a lane once hung here. n = 400 takes both lane splits with GEMMs big enough to want the pool inside them.
        using var pool = new CpuWorkerPool(2);
        using var backend = new CpuBackend(pool);
        const int n = 400;
        var a = LinalgReference.GaussianMatrix(n, n, 5);
        var run = Task.Run(() =>
        {
            using var ta = backend.FromArray(a, n, n);
            using var u = backend.Allocate(n, n);
            using var s = backend.Allocate(n);
            using var vt = backend.Allocate(n, n);
            for (int i = 0; i < 8; i++) backend.Svd(u, s, vt, ta);
            return (u.ToArray(), s.ToArray(), vt.ToArray());
        }, TestContext.Current.CancellationToken);
        var result = await run.WaitAsync(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken); // a TimeoutException when hung
        LinalgConformance.AssertSvd(a, n, n, result, LinalgConformance.WellConditioned, "two lanes");
    }
}

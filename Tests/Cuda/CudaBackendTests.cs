using LoraRuntime.Cuda;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Cuda;

/// <summary>
/// What is CUDA's own beyond the conformance suites: the device allocator and its out-of-memory rule, transfers through
/// the pinned staging buffers, TF32 and bf16 GEMMs at their tolerances, the grouped GEMM against the per-problem loop,
/// allocation-free warm calls, and graph capture. Skips with the reason where the CUDA backend cannot run.
/// </summary>
public sealed class CudaBackendTests
{
    public CudaBackendTests() => CudaTestDevice.SkipUnlessUsable();

    [Fact]
    public void Freed_blocks_are_cached_and_small_ones_share_segments()
    {
        using var backend = new CudaBackend();
        var pool = (CudaMemoryPool)backend.Pool;
        var before = pool.Stats;
        int segments = pool.SmallSegments;
        var small = Enumerable.Range(0, 8).Select(_ => backend.Allocate(1000)).ToArray(); // 4000 B → 4 KiB blocks, a size no one else uses
        Assert.Equal(segments + 1, pool.SmallSegments);
        foreach (var t in small) t.Dispose();
        using (var again = backend.Allocate(1000)) Assert.Equal(before.CacheHits + 1, pool.Stats.CacheHits);
        using (var large = backend.Allocate(3 << 20)) Assert.True(pool.DeviceBytesReserved >= (12L << 20));
        backend.Pool.Trim();
        Assert.Equal(segments, pool.SmallSegments);
        Assert.Equal(before.BytesInUse, pool.Stats.BytesInUse);
    }

    [Fact]
    public void Out_of_device_memory_frees_the_cache_retries_once_then_says_so()
    {
        using var backend = new CudaBackend();
        backend.Allocate(1 << 22).Dispose(); // one cached block for the retry to free
        long freesBefore = backend.Pool.Stats.SystemFrees;
        long tooMuch = backend.Device.TotalMemoryBytes * 4;
        var e = Assert.Throws<InsufficientMemoryException>(() => backend.Pool.Rent(tooMuch, out _));
        Assert.Contains("cuda:0 pool: out of memory", e.Message);
        Assert.True(backend.Pool.Stats.SystemFrees > freesBefore, "the cache was not freed before the retry");
        using var fine = backend.Allocate(1000); // and the pool still works
    }

    [Fact]
    public void Transfers_cross_the_staging_buffers_exactly()
    {
        using var backend = new CudaBackend();
        var values = Reference.Random(5_000_003, 9); // 20 MB: five 4 MiB staging pieces and a tail
        using var t = backend.FromArray(values, values.Length);
        using var copy = backend.Allocate(values.Length);
        backend.Copy(copy, t);
        Assert.Equal(values, copy.ToArray());
        backend.Fill(copy, float.NaN);
        Assert.All(copy.ToArray().Take(1000), v => Assert.True(float.IsNaN(v)));
        var ids = Enumerable.Range(0, 1001).Select(i => i * 7 - 3000).ToArray();
        using var idTensor = backend.Allocate(DType.I32, new Shape(ids.Length));
        backend.Upload(idTensor, ids);
        using var asFloats = backend.Allocate(ids.Length);
        Assert.Throws<ArgumentException>(() => backend.Copy(asFloats, idTensor));
    }

    [Theory]
    [InlineData(CudaGemmPrecision.Fp32, 1e-5)]
    [InlineData(CudaGemmPrecision.Tf32, 1e-3)]
    [InlineData(CudaGemmPrecision.Bf16, 1e-2)]
    public void Every_precision_is_within_its_tolerance_of_float64(CudaGemmPrecision precision, double tolerance)
    {
        using var backend = new CudaBackend { GemmPrecision = precision };
        foreach (var (m, n, k, ta, tb) in new[] { (256, 320, 512, false, false), (97, 130, 1000, true, false), (64, 64, 4096, false, true) })
        {
            int lda = ta ? m : k, ldb = tb ? k : n;
            var av = Reference.Random(m * k, m + k);
            var bv = Reference.Random(k * n, n + k);
            using var a = backend.FromArray(av, av.Length);
            using var b = backend.FromArray(bv, bv.Length);
            using var c = backend.Allocate(m * n);
            var expected = new double[m * n];
            Reference.Gemm(ta, tb, m, n, k, 1, av, 0, lda, bv, 0, ldb, 0, expected, 0, n);
            backend.Gemm(ta ? Transpose.Yes : Transpose.No, tb ? Transpose.Yes : Transpose.No, m, n, k, 1, a, 0, lda, b, 0, ldb, 0, c, 0, n);
            double error = Reference.RelativeError(c.ToArray(), expected);
            Assert.True(error <= tolerance, $"{precision} {m}×{n}×{k}: relative error {error:E2} > {tolerance:E0}");
        }
    }

    [Fact]
    public void Grouped_GEMM_and_the_per_problem_loop_agree()
    {
        using var grouped = new CudaBackend { UseGroupedGemm = true };
        using var looped = new CudaBackend { UseGroupedGemm = false };
        var shapes = new (int m, int n, int k)[] { (37, 8, 96), (37, 96, 8), (5, 16, 96), (64, 4, 50), (1, 96, 16), (3, 5, 0), (70, 1, 33) };
        float[][] results = new float[2][];
        int at = 0;
        foreach (var backend in new[] { grouped, looped })
        {
            var tensors = new List<Tensor>();
            var problems = new GemmProblem[shapes.Length];
            for (int i = 0; i < shapes.Length; i++)
            {
                var (m, n, k) = shapes[i];
                var a = backend.FromArray(Reference.Random(Math.Max(1, m * k), 10 + i), Math.Max(1, m * k));
                var b = backend.FromArray(Reference.Random(Math.Max(1, k * n), 20 + i), Math.Max(1, k * n));
                var c = backend.FromArray(Reference.Random(m * n, 30 + i), m * n);
                tensors.AddRange([a, b, c]);
                problems[i] = Gemm.GemmConformance.Problem(false, i % 2 == 1, m, n, k, 0.75f, i % 3 == 0 ? 0f : 0.5f,
                    a, 0, Math.Max(1, i % 2 == 1 ? k : k), b, 0, Math.Max(1, i % 2 == 1 ? k : n), c, 0, Math.Max(1, n));
            }
            backend.GemmGrouped(problems);
            results[at++] = problems.SelectMany(p => p.C.ToArray()).ToArray();
            foreach (var t in tensors) t.Dispose();
        }
        double error = Reference.RelativeError(results[0], Reference.ToDouble(results[1]));
        Assert.True(error <= 1e-6, $"grouped (available: {CudaBackend.GroupedGemmAvailable}) vs loop: relative difference {error:E2}");
    }

    [Fact]
    public void Warm_GEMMs_and_primitives_allocate_nothing()
    {
        using var backend = new CudaBackend();
        using var a = backend.FromArray(Reference.Random(128 * 64, 1), 128, 64);
        using var b = backend.FromArray(Reference.Random(64 * 96, 2), 64, 96);
        using var c = backend.Zeros(128, 96);
        using var d = backend.Zeros(128, 96);
        var problems = new[] { new GemmProblem(c, a, b, 128, 96, 64), new GemmProblem(d, a, b, 128, 96, 64, alpha: 2) };
        void Step()
        {
            backend.Gemm(problems[0]);
            backend.GemmStridedBatched(problems[0], 0, 0, 0, 1);
            backend.GemmGrouped(problems);
            backend.GeluForward(d, c);
            backend.Axpy(c, 0.5f, d);
        }
        for (int i = 0; i < 3; i++) Step();
        backend.Synchronize();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10; i++) Step();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        backend.Synchronize();
        Assert.Equal(0, allocated);
    }

    [Fact]
    public void A_captured_step_replays_on_new_inputs()
    {
        using var backend = new CudaBackend();
        const int m = 48, n = 40, k = 32;
        using var a = backend.FromArray(Reference.Random(m * k, 3), m, k);
        using var b = backend.FromArray(Reference.Random(k * n, 4), k, n);
        using var h = backend.Allocate(m, n);
        using var y = backend.Allocate(m, n);
        void Step()
        {
            backend.MatMul(h, a, b);
            backend.GeluForward(y, h);
            backend.Axpy(y, 0.25f, h);
        }
        float[] Eager()
        {
            Step();
            return y.ToArray();
        }
        var expected = Eager();
        using var graph = backend.Capture(Step);
        backend.Fill(y, float.NaN);
        graph.Launch();
        AssertClose(expected, y.ToArray());

        var newA = Reference.Random(m * k, 5);
        a.CopyFrom(newA);
        var expectedNew = Eager();
        backend.Fill(y, float.NaN);
        graph.Launch();
        AssertClose(expectedNew, y.ToArray());
        Assert.True(Reference.RelativeError(expected, Reference.ToDouble(expectedNew)) > 1e-2, "the new input changed nothing");
    }

    /// <summary>The same kernels on the same data: equal up to cuBLAS picking another algorithm inside the graph.</summary>
    private static void AssertClose(float[] expected, float[] actual)
    {
        Assert.All(actual, v => Assert.True(float.IsFinite(v)));
        double error = Reference.RelativeError(actual, Reference.ToDouble(expected));
        Assert.True(error <= 1e-6, $"graph replay differs from the eager step: {error:E2}");
    }

    [Fact]
    public void The_sketched_truncated_SVD_agrees_with_the_CPU_for_a_seed()
    {
        using var cuda = new CudaBackend { TruncatedSvdMethod = CudaTruncatedSvdMethod.Sketch, GemmPrecision = CudaGemmPrecision.Bf16 };
        using var cpu = new LoraRuntime.Cpu.CpuBackend();
        const int m = 160, n = 90, rank = 6;
        var a = Linalg.LinalgReference.GaussianMatrix(m, n, 21);
        var options = new TruncatedSvdOptions(Oversampling: 4, PowerIterations: 1, Seed: 99);
        float[] Run(Backend backend, out float[] uOut)
        {
            using var at = backend.FromArray(a, m, n);
            using var u = backend.Allocate(m, rank);
            using var s = backend.Allocate(rank);
            using var vt = backend.Allocate(rank, n);
            backend.TruncatedSvd(u, s, vt, at, options);
            uOut = u.ToArray();
            return s.ToArray();
        }
        var cpuS = Run(cpu, out var cpuU);
        var cudaS = Run(cuda, out var cudaU);
        // A Gaussian matrix's spectrum decays slowly, so the sketch's values depend on the test matrix: equal seeds, equal values.
        Assert.True(Reference.RelativeError(cudaS, Reference.ToDouble(cpuS)) <= 1e-4, "singular values differ from the CPU's");
        Assert.True(Reference.RelativeError(cudaU, Reference.ToDouble(cpuU)) <= 1e-3, "singular vectors differ from the CPU's");
        Assert.Equal(CudaGemmPrecision.Bf16, cuda.GemmPrecision); // restored after the float32 GEMMs inside
    }

    [Fact]
    public void Calls_from_several_threads_are_serialised()
    {
        using var backend = new CudaBackend();
        const int threads = 4, rounds = 50, n = 4096;
        var results = new float[threads][];
        var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            using var x = backend.FromArray(Enumerable.Repeat((float)(t + 1), n).ToArray(), n);
            using var y = backend.Zeros(n);
            for (int r = 0; r < rounds; r++) backend.Axpy(y, 1f, x); // y = rounds·(t + 1)
            results[t] = y.ToArray();
        })).ToArray();
        foreach (var w in workers) w.Start();
        foreach (var w in workers) w.Join();
        for (int t = 0; t < threads; t++) Assert.All(results[t], v => Assert.Equal(rounds * (t + 1f), v));
    }

    [Fact]
    public void A_step_that_waits_for_the_GPU_cannot_be_captured_and_the_backend_still_works()
    {
        using var backend = new CudaBackend();
        using var x = backend.FromArray([1, 2, 3], 3);
        Assert.ThrowsAny<Exception>(() => backend.Capture(() => x.ToArray()));
        backend.Scale(x, x, 2);
        Assert.Equal([2f, 4, 6], x.ToArray());
    }
}

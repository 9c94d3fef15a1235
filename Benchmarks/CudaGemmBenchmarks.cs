using BenchmarkDotNet.Attributes;
using LoraRuntime.Cuda;

namespace LoraRuntime.Benchmarks;

/// <summary>
/// Float32-storage C = A·B on the CUDA backend (cuBLAS) in each <see cref="CudaGemmPrecision"/>, over the shapes of
/// <see cref="GemmBenchmarks"/>. Each measured call waits for the GPU, so the time is the GEMM's plus one stream
/// synchronisation. Needs a GPU: setup throws, with the probe's reason, where there is none.
/// </summary>
[MemoryDiagnoser]
public class CudaGemmBenchmarks
{
    private CudaBackend _backend = null!;
    private Tensor _a = null!, _b = null!, _c = null!;
    private GemmProblem _problem;

    /// <summary>The shape of this case.</summary>
    [ParamsSource(nameof(Shapes))]
    public GemmSize Shape { get; set; } = new(1, 1, 1);

    /// <summary>The shapes of <see cref="GemmBenchmarks"/>.</summary>
    public static IEnumerable<GemmSize> Shapes => GemmBenchmarks.Shapes;

    /// <summary>How cuBLAS computes.</summary>
    [Params(CudaGemmPrecision.Fp32, CudaGemmPrecision.Tf32, CudaGemmPrecision.Bf16)]
    public CudaGemmPrecision Precision { get; set; }

    /// <summary>Allocates A, B and C on the GPU and fills A and B from a seeded generator.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _backend = new CudaBackend { GemmPrecision = Precision };
        var random = new Random(1234);
        _a = _backend.FromArray(GemmBenchmarks.RandomValues(random, Shape.M * Shape.K), Shape.M, Shape.K);
        _b = _backend.FromArray(GemmBenchmarks.RandomValues(random, Shape.K * Shape.N), Shape.K, Shape.N);
        _c = _backend.Allocate(Shape.M, Shape.N);
        _problem = new GemmProblem(_c, _a, _b, Shape.M, Shape.N, Shape.K);
        _backend.Synchronize();
    }

    /// <summary>C = A·B, then wait for it.</summary>
    [Benchmark]
    public void Gemm()
    {
        _backend.Gemm(_problem);
        _backend.Synchronize();
    }

    /// <summary>Returns the tensors and the backend's memory.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _a.Dispose();
        _b.Dispose();
        _c.Dispose();
        _backend.Dispose();
    }
}

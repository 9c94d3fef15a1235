using BenchmarkDotNet.Attributes;
using LoraRuntime.Cpu;

namespace LoraRuntime.Benchmarks;

/// <summary>A GEMM size for the benchmark parameters: C is M×N, A M×K, B K×N. Shown as "MxNxK".</summary>
public sealed record GemmSize(int M, int N, int K)
{
    /// <inheritdoc/>
    public override string ToString() => $"{M}x{N}x{K}";
}

/// <summary>
/// Float32 C = A·B on the CPU backend over the shapes of <c>lora bench gemm</c>: square, LoRA-like skinny
/// (rank 16 on either side), and a matrix-vector product. Tensors come from the backend's pool once; the
/// measured call must allocate nothing.
/// </summary>
[MemoryDiagnoser]
public class GemmBenchmarks
{
    private CpuBackend _backend = null!;
    private Tensor _a = null!, _b = null!, _c = null!;
    private GemmProblem _problem;

    /// <summary>The shapes, as in <c>lora bench gemm</c>'s defaults.</summary>
    public static IEnumerable<GemmSize> Shapes { get; } =
    [
        new(1024, 1024, 1024), new(2048, 2048, 2048), new(512, 4096, 4096),
        new(512, 16, 4096), new(512, 4096, 16), new(1, 4096, 4096),
    ];

    /// <summary>The shape of this case.</summary>
    [ParamsSource(nameof(Shapes))]
    public GemmSize Shape { get; set; } = new(1, 1, 1);

    /// <summary>Allocates A, B and C on a CPU backend and fills A and B from a seeded generator.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _backend = new CpuBackend();
        var random = new Random(1234);
        _a = _backend.FromArray(RandomValues(random, Shape.M * Shape.K), Shape.M, Shape.K);
        _b = _backend.FromArray(RandomValues(random, Shape.K * Shape.N), Shape.K, Shape.N);
        _c = _backend.Allocate(Shape.M, Shape.N);
        _problem = new GemmProblem(_c, _a, _b, Shape.M, Shape.N, Shape.K);
    }

    /// <summary>C = A·B.</summary>
    [Benchmark]
    public void Sgemm() => _backend.Gemm(_problem);

    /// <summary>Returns the tensors and the backend's memory.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _a.Dispose();
        _b.Dispose();
        _c.Dispose();
        _backend.Dispose();
    }

    /// <summary>count values uniform in [−1, 1) from <paramref name="random"/> (shared by the GEMM suites).</summary>
    internal static float[] RandomValues(Random random, int count)
    {
        var values = new float[count];
        for (int i = 0; i < values.Length; i++) values[i] = random.NextSingle() * 2 - 1;
        return values;
    }
}

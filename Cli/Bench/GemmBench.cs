using LoraRuntime.Cpu;
using LoraRuntime.Cuda;

namespace LoraRuntime.Cli.Bench;

/// <summary>
/// Times float32 GEMMs on a backend: for each shape, A, B and C come from the backend's pool (A and B filled
/// from a seeded generator, uniform in [-1, 1)), and C = A·B (α = 1, β = 0) is timed with <see cref="BenchTimer"/>.
/// The result of the last call is checked against float64 dot products at sampled positions. Packed: op(B) is packed
/// once (<see cref="Backend.PackMatrix"/>) and <see cref="Backend.GemmPacked"/> is timed.
/// </summary>
internal static class GemmBench
{
    /// <summary>Positions of C checked against the float64 reference (the four corners included).</summary>
    public const int CheckedEntries = 64;

    /// <summary>Benchmarks one shape; see the class summary.</summary>
    public static BenchRecord Run(Backend backend, GemmShape shape, GemmTrans trans, int warmup, int? reps,
        int seed = 1234, double targetSeconds = BenchTimer.DefaultTargetSeconds, string op = "sgemm", bool packed = false)
    {
        var random = new Random(seed);
        // Stored shapes: A is M×K (K×M when transposed), B is K×N (N×K when transposed).
        var (aRows, aCols) = trans.A == Transpose.No ? (shape.M, shape.K) : (shape.K, shape.M);
        var (bRows, bCols) = trans.B == Transpose.No ? (shape.K, shape.N) : (shape.N, shape.K);
        float[] hostA = BenchData.Uniform(random, aRows * aCols);
        float[] hostB = BenchData.Uniform(random, bRows * bCols);

        using var a = backend.FromArray(hostA, aRows, aCols);
        using var b = backend.FromArray(hostB, bRows, bCols);
        using var c = backend.Allocate(shape.M, shape.N);
        var problem = new GemmProblem(c, a, b, shape.M, shape.N, shape.K, trans.A, trans.B);
        using var packedB = packed ? backend.PackMatrix(b, trans.B) : null;
        Action call = packedB is null ? () => backend.Gemm(problem) : () => backend.GemmPacked(shape.M, 1f, a, 0, shape.K, packedB, 0f, c, 0, shape.N);

        var timing = BenchTimer.Measure(call, backend.Synchronize, warmup, reps, targetSeconds);

        float[] hostC = c.ToArray();
        double error = SampledRelativeError(hostA, hostB, hostC, shape, trans, random);
        double gflops = shape.Flops / (timing.MedianMs * 1e-3) / 1e9;
        return new BenchRecord(op, backend.Name, [shape.M, shape.N, shape.K], trans.ToString(),
            timing.MedianMs, gflops, timing.Reps, error);
    }

    /// <summary>The name of the GEMM kernel the backend runs, for report headers.</summary>
    public static string KernelName(Backend backend) => backend switch
    {
        CpuBackend cpu => cpu.GemmKernel,
        CudaBackend cuda => $"cuBLAS {cuda.GemmPrecision.ToString().ToLowerInvariant()}",
        _ => backend.Name,
    };

    /// <summary>"fp32", "tf32" or "bf16" (any case) → the precision; anything else → <see cref="UsageException"/>.</summary>
    public static CudaGemmPrecision ParsePrecision(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        "fp32" => CudaGemmPrecision.Fp32,
        "tf32" => CudaGemmPrecision.Tf32,
        "bf16" => CudaGemmPrecision.Bf16,
        _ => throw new UsageException($"--precision: expected fp32, tf32 or bf16; got '{text}'"),
    };

    /// <summary>Sets the CUDA backend's GEMM precision; tf32 and bf16 anywhere else are a <see cref="UsageException"/>.</summary>
    public static void SetPrecision(Backend backend, CudaGemmPrecision precision)
    {
        if (backend is CudaBackend cuda) cuda.GemmPrecision = precision;
        else if (precision != CudaGemmPrecision.Fp32)
            throw new UsageException($"--precision {precision.ToString().ToLowerInvariant()}: only the CUDA backend has TF32 and bf16 GEMMs; the device is {backend.Name}");
    }

    /// <summary>The record's op: "sgemm" for fp32, "sgemm-tf32" and "sgemm-bf16" otherwise.</summary>
    public static string OpName(CudaGemmPrecision precision) =>
        precision == CudaGemmPrecision.Fp32 ? "sgemm" : $"sgemm-{precision.ToString().ToLowerInvariant()}";

    /// <summary>
    /// max |C − ref| / max |ref| over <see cref="CheckedEntries"/> positions (the corners, then random ones), where
    /// ref is the float64 dot product of A's row and B's column: an error relative to the result's magnitude,
    /// which stays meaningful where single entries of a random product are near zero.
    /// </summary>
    internal static double SampledRelativeError(float[] a, float[] b, float[] c, GemmShape shape, GemmTrans trans, Random random)
    {
        double maxError = 0, maxReference = 0;
        for (int s = 0; s < CheckedEntries; s++)
        {
            var (i, j) = s switch
            {
                0 => (0, 0),
                1 => (shape.M - 1, shape.N - 1),
                2 => (0, shape.N - 1),
                3 => (shape.M - 1, 0),
                _ => (random.Next(shape.M), random.Next(shape.N)),
            };
            double reference = 0;
            for (int k = 0; k < shape.K; k++)
            {
                double av = trans.A == Transpose.No ? a[(long)i * shape.K + k] : a[(long)k * shape.M + i];
                double bv = trans.B == Transpose.No ? b[(long)k * shape.N + j] : b[(long)j * shape.K + k];
                reference += av * bv;
            }
            maxError = Math.Max(maxError, Math.Abs(c[(long)i * shape.N + j] - reference));
            maxReference = Math.Max(maxReference, Math.Abs(reference));
        }
        return maxReference > 0 ? maxError / maxReference : maxError;
    }
}

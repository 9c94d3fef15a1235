using BenchmarkDotNet.Attributes;
using LoraRuntime.Cpu;

namespace LoraRuntime.Benchmarks;

/// <summary>
/// QR, the full thin SVD and the truncated SVD on the CPU backend over the shapes of <c>lora bench svd</c>: Gaussian
/// n×n matrices for QR and the full SVD, and rank 16 of a 4096×4096 matrix with singular values 0.8^i (plus 1e-5 noise)
/// for the truncated one. Tensors come from the backend's pool once; scratch is rented and returned per call.
/// </summary>
[MemoryDiagnoser]
public class SvdBenchmarks
{
    private CpuBackend _backend = null!;
    private Tensor _a = null!, _u = null!, _s = null!, _vt = null!, _q = null!, _r = null!;
    private Tensor _low = null!, _lowU = null!, _lowS = null!, _lowVt = null!;

    /// <summary>The size of the square matrix of the QR and full-SVD cases.</summary>
    [Params(256, 512, 1024)]
    public int N { get; set; }

    /// <summary>Allocates the matrices and fills them from a seeded generator.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _backend = new CpuBackend();
        var random = new Random(1234);
        _a = _backend.FromArray(Gaussian(random, N * N), N, N);
        _u = _backend.Allocate(N, N);
        _s = _backend.Allocate(N);
        _vt = _backend.Allocate(N, N);
        _q = _backend.Allocate(N, N);
        _r = _backend.Allocate(N, N);
        const int m = 4096, spectrum = 64, rank = 16;
        using var g = _backend.FromArray(Gaussian(random, m * spectrum), m, spectrum);
        using var factor = _backend.Allocate(m, spectrum);
        using var unused = _backend.Allocate(spectrum, spectrum);
        _backend.Qr(factor, unused, g);
        float[] scaled = factor.ToArray();
        for (int i = 0; i < m; i++)
            for (int t = 0; t < spectrum; t++) scaled[i * spectrum + t] *= MathF.Pow(0.8f, t);
        using var us = _backend.FromArray(scaled, m, spectrum);
        _low = _backend.Allocate(m, m);
        _backend.MatMul(_low, us, factor, transB: Transpose.Yes); // U·diag(s)·Uᵀ: the same spectrum
        float[] noisy = _low.ToArray();
        float[] noise = Gaussian(random, noisy.Length);
        for (int i = 0; i < noisy.Length; i++) noisy[i] += 1e-5f * noise[i];
        _low.CopyFrom(noisy);
        _lowU = _backend.Allocate(m, rank);
        _lowS = _backend.Allocate(rank);
        _lowVt = _backend.Allocate(rank, m);
    }

    /// <summary>The thin SVD of the Gaussian n×n matrix.</summary>
    [Benchmark]
    public void Svd() => _backend.Svd(_u, _s, _vt, _a);

    /// <summary>The QR of the Gaussian n×n matrix.</summary>
    [Benchmark]
    public void Qr() => _backend.Qr(_q, _r, _a);

    /// <summary>Rank 16 of the 4096×4096 decaying-spectrum matrix with the default options (independent of N).</summary>
    [Benchmark]
    public void TruncatedSvd4096Rank16() => _backend.TruncatedSvd(_lowU, _lowS, _lowVt, _low, new TruncatedSvdOptions());

    /// <summary>Returns the tensors and the backend's memory.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var t in new[] { _a, _u, _s, _vt, _q, _r, _low, _lowU, _lowS, _lowVt }) t.Dispose();
        _backend.Dispose();
    }

    private static float[] Gaussian(Random random, int count)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++)
            values[i] = (float)(Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));
        return values;
    }
}

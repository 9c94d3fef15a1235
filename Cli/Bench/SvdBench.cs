using System.Globalization;
using System.Numerics.Tensors;

namespace LoraRuntime.Cli.Bench;

/// <summary>
/// Times the full thin SVD of Gaussian n×n matrices and the truncated SVD of a matrix with a decaying spectrum built
/// as <c>shared/anchors/blas_reference.py svd</c> builds it: U and V from the QR of Gaussian m×64 and n×64 matrices,
/// s = 0.8^i, A = U·diag(s)·Vᵀ + 1e-5·noise. Each result carries ‖A − U·S·Vᵀ‖/‖A‖ of its last call (float64), and
/// the truncated one the error of the best rank-k approximation beside it.
/// </summary>
internal static class SvdBench
{
    /// <summary>The sizes of <c>lora bench svd</c>'s full SVDs.</summary>
    public const string DefaultSizes = "256,512,1024";

    /// <summary>The truncated case: m×n×rank.</summary>
    public const string DefaultTruncated = "4096x4096x16";

    /// <summary>Columns of the known factors of the truncated case's matrix.</summary>
    public const int SpectrumLength = 64;

    /// <summary>The full thin SVD of a Gaussian n×n matrix.</summary>
    public static SvdBenchRecord Full(Backend backend, int n, int warmup, int? reps, int seed = 1234,
        double targetSeconds = BenchTimer.DefaultTargetSeconds)
    {
        float[] host = Gaussian(new Random(seed), n * n);
        using var a = backend.FromArray(host, n, n);
        using var u = backend.Allocate(n, n);
        using var s = backend.Allocate(n);
        using var vt = backend.Allocate(n, n);
        var timing = BenchTimer.Measure(() => backend.Svd(u, s, vt, a), backend.Synchronize, warmup, reps, targetSeconds);
        double error = ReconstructionError(host, n, n, u.ToArray(), s.ToArray(), vt.ToArray(), n);
        return new SvdBenchRecord("svd", backend.Name, [n, n], timing.MedianMs, timing.Reps, error);
    }

    /// <summary>The rank-<paramref name="rank"/> truncated SVD (default options) of the decaying-spectrum m×n matrix.</summary>
    public static SvdBenchRecord Truncated(Backend backend, int m, int n, int rank, int warmup, int? reps, int seed = 1234,
        double targetSeconds = BenchTimer.DefaultTargetSeconds)
    {
        int spectrum = Math.Min(SpectrumLength, Math.Min(m, n));
        if (rank > spectrum)
            throw new UsageException($"--truncated: the rank {rank} must be at most {spectrum} (the known spectrum's length)");
        var random = new Random(seed);
        float[] factorU = Orthonormal(backend, m, spectrum, random), factorV = Orthonormal(backend, n, spectrum, random);
        var sigma = new float[spectrum];
        for (int i = 0; i < spectrum; i++) sigma[i] = MathF.Pow(0.8f, i);
        float[] host = LowRankPlusNoise(backend, m, n, factorU, sigma, factorV, random);

        using var a = backend.FromArray(host, m, n);
        using var u = backend.Allocate(m, rank);
        using var s = backend.Allocate(rank);
        using var vt = backend.Allocate(rank, n);
        var options = new TruncatedSvdOptions();
        var timing = BenchTimer.Measure(() => backend.TruncatedSvd(u, s, vt, a, options), backend.Synchronize, warmup, reps, targetSeconds);
        double error = ReconstructionError(host, m, n, u.ToArray(), s.ToArray(), vt.ToArray(), rank);
        double best = ReconstructionError(host, m, n, Columns(factorU, m, spectrum, rank), sigma[..rank],
            Transposed(Columns(factorV, n, spectrum, rank), n, rank), rank);
        return new SvdBenchRecord("truncated_svd", backend.Name, [m, n, rank], timing.MedianMs, timing.Reps, error, best);
    }

    /// <summary>Parses "256,512,1024": positive sizes up to 16384; a bad token is a <see cref="UsageException"/>.</summary>
    public static IReadOnlyList<int> ParseSizes(string? text, string option)
    {
        var sizes = new List<int>();
        foreach (string token in (text ?? "").Split(','))
        {
            string t = token.Trim();
            if (!int.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n < 1 || n > 16384)
                throw new UsageException($"{option}: expected sizes from 1 to 16384 separated by commas (e.g. {DefaultSizes}); got '{t}'");
            sizes.Add(n);
        }
        return sizes;
    }

    /// <summary>‖A − U·diag(s)·Vt‖_F / ‖A‖_F in float64, row by row across the cores (U [m, k], Vt [k, n]).</summary>
    internal static double ReconstructionError(float[] a, int m, int n, float[] u, float[] s, float[] vt, int k)
    {
        var vtd = new double[(long)k * n];
        for (long i = 0; i < vtd.Length; i++) vtd[i] = vt[i];
        double residual = 0, total = 0;
        var gate = new object();
        Parallel.For(0, m, () => (Row: new double[n], Residual: 0.0, Total: 0.0), (i, _, local) =>
        {
            var row = local.Row;
            Array.Clear(row);
            for (int t = 0; t < k; t++)
                TensorPrimitives.MultiplyAdd(new ReadOnlySpan<double>(vtd, t * n, n), (double)u[(long)i * k + t] * s[t], row, row);
            for (int j = 0; j < n; j++)
            {
                double aij = a[(long)i * n + j], d = aij - row[j];
                local.Residual += d * d;
                local.Total += aij * aij;
            }
            return local;
        }, local =>
        {
            lock (gate)
            {
                residual += local.Residual;
                total += local.Total;
            }
        });
        return total == 0 ? Math.Sqrt(residual) : Math.Sqrt(residual / total);
    }

    /// <summary>The Q of a Gaussian rows×cols matrix (as the reference builds U and V).</summary>
    private static float[] Orthonormal(Backend backend, int rows, int cols, Random random)
    {
        using var g = backend.FromArray(Gaussian(random, rows * cols), rows, cols);
        using var q = backend.Allocate(rows, cols);
        using var r = backend.Allocate(cols, cols);
        backend.Qr(q, r, g);
        return q.ToArray();
    }

    /// <summary>(U·diag(σ))·Vᵀ + 1e-5·noise, the product on the backend.</summary>
    private static float[] LowRankPlusNoise(Backend backend, int m, int n, float[] u, float[] sigma, float[] v, Random random)
    {
        int k = sigma.Length;
        var scaled = new float[u.Length];
        for (int i = 0; i < m; i++)
            for (int t = 0; t < k; t++) scaled[i * k + t] = u[i * k + t] * sigma[t];
        using var us = backend.FromArray(scaled, m, k);
        using var vv = backend.FromArray(v, n, k);
        using var a = backend.Allocate(m, n);
        backend.MatMul(a, us, vv, transB: Transpose.Yes);
        float[] host = a.ToArray();
        float[] noise = Gaussian(random, host.Length);
        for (int i = 0; i < host.Length; i++) host[i] += 1e-5f * noise[i];
        return host;
    }

    private static float[] Columns(float[] x, int rows, int cols, int keep)
    {
        var result = new float[rows * keep];
        for (int i = 0; i < rows; i++) Array.Copy(x, i * cols, result, i * keep, keep);
        return result;
    }

    private static float[] Transposed(float[] x, int rows, int cols)
    {
        var result = new float[x.Length];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) result[j * rows + i] = x[i * cols + j];
        return result;
    }

    private static float[] Gaussian(Random random, int count)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++)
            values[i] = (float)(Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));
        return values;
    }
}

namespace LoraRuntime.Layers.Compression;

/// <summary>
/// W [m, n] ≈ U·V with U [m, K] = U_K·√Σ_K and V [K, n] = √Σ_K·V_Kᵀ from the SVD (the balanced split: both factors
/// carry √σ), with the fraction of spectral energy kept and the relative Frobenius error of the stored factors.
/// </summary>
/// <param name="Rank">K.</param>
/// <param name="U">U [m, K], row-major.</param>
/// <param name="V">V [K, n], row-major.</param>
/// <param name="KeptEnergy">Σ_{i&lt;K} σᵢ² / ‖W‖²_F (1 for a zero matrix).</param>
/// <param name="RelativeError">‖W − U·V‖_F / ‖W‖_F of the float32 factors (0 for a zero matrix).</param>
internal sealed record Factorization(int Rank, float[] U, float[] V, double KeptEnergy, double RelativeError);

/// <summary>
/// Factors a matrix by the backend's SVD. The exact thin SVD is used when the whole spectrum is needed (a rank chosen
/// by energy), for matrices with min(m, n) ≤ <see cref="ExactSvdLimit"/>, and when K is above a quarter of min(m, n);
/// otherwise the randomized truncated SVD finds the top K triplets. Either way the kept energy is measured against
/// ‖W‖²_F (the sum of the whole spectrum) and the error is computed from the stored factors, not estimated.
/// </summary>
internal static class LowRankFactorization
{
    /// <summary>Matrices whose smaller side is at most this use the exact SVD whatever the rank.</summary>
    public const int ExactSvdLimit = 512;

    /// <summary>
    /// Factors <paramref name="weight"/> [m, n] at the rank <paramref name="choice"/> gives; <paramref name="name"/>
    /// names the matrix in errors (a fixed K above min(m, n) is refused).
    /// </summary>
    public static Factorization Factor(Tensor weight, RankChoice choice, string name, TruncatedSvdOptions? svd = null)
    {
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(choice);
        if (weight.Shape.Rank != 2) throw new ArgumentException($"weight: expected a matrix [m, n] for {name}; got {weight.Shape}", nameof(weight));
        var backend = weight.Backend;
        int m = weight.Shape[0], n = weight.Shape[1], k = Math.Min(m, n);
        if (!choice.ByEnergy && choice.Rank > k)
            throw new ArgumentOutOfRangeException(nameof(choice), choice.Rank,
                $"rank: K = {choice.Rank} is above min(m, n) = {k} for {name} [{m}, {n}]; choose K in 1..{k}");
        double total = SquaredNorm(weight.ToArray());
        float[] s, u, vt;
        int rank, width;
        if (choice.ByEnergy || k <= ExactSvdLimit || 4 * choice.Rank > k)
        {
            using var ut = backend.Allocate(m, k);
            using var st = backend.Allocate(k);
            using var vtt = backend.Allocate(k, n);
            backend.Svd(ut, st, vtt, weight);
            (u, s, vt) = (ut.ToArray(), st.ToArray(), vtt.ToArray());
            rank = choice.RankFor(s);
            width = k;
        }
        else
        {
            rank = choice.Rank;
            using var ut = backend.Allocate(m, rank);
            using var st = backend.Allocate(rank);
            using var vtt = backend.Allocate(rank, n);
            backend.TruncatedSvd(ut, st, vtt, weight, svd ?? new TruncatedSvdOptions(Oversampling: 10, PowerIterations: 4));
            (u, s, vt) = (ut.ToArray(), st.ToArray(), vtt.ToArray());
            width = rank;
        }
        var uk = new float[m * rank];
        var vk = new float[rank * n];
        double kept = 0;
        for (int j = 0; j < rank; j++)
        {
            kept += (double)s[j] * s[j];
            float root = MathF.Sqrt(s[j]);
            for (int i = 0; i < m; i++) uk[i * rank + j] = root * u[i * width + j];
            for (int c = 0; c < n; c++) vk[j * n + c] = root * vt[j * n + c];
        }
        double error = total == 0 ? 0 : Math.Sqrt(SquaredNorm(Residual(weight, uk, vk, rank)) / total);
        return new Factorization(rank, uk, vk, total == 0 ? 1 : Math.Min(1, kept / total), error);
    }

    /// <summary>Σ x² in float64.</summary>
    public static double SquaredNorm(ReadOnlySpan<float> values)
    {
        double sum = 0;
        foreach (float v in values) sum += (double)v * v;
        return sum;
    }

    /// <summary>W − U·V, by the backend's GEMM.</summary>
    private static float[] Residual(Tensor weight, float[] u, float[] v, int rank)
    {
        var backend = weight.Backend;
        int m = weight.Shape[0], n = weight.Shape[1];
        using var residual = backend.Allocate(m, n);
        using var ut = backend.FromArray(u, m, rank);
        using var vt = backend.FromArray(v, rank, n);
        backend.Copy(residual, weight);
        backend.MatMul(residual, ut, vt, alpha: -1f, beta: 1f);
        return residual.ToArray();
    }
}

namespace LoraRuntime.Layers.Compression;

/// <summary>
/// How many singular triplets a low-rank factorization keeps: a fixed rank K, or the smallest K whose triplets keep
/// at least a fraction <see cref="Energy"/> of the spectral energy Σσ² (which needs the whole spectrum).
/// </summary>
internal sealed record RankChoice
{
    private RankChoice(int rank, double energy) => (Rank, Energy) = (rank, energy);

    /// <summary>K, or 0 when the rank follows from <see cref="Energy"/>.</summary>
    public int Rank { get; }

    /// <summary>The fraction of Σσ² to keep, in (0, 1], or 0 when the rank is fixed.</summary>
    public double Energy { get; }

    /// <summary>True when the rank follows from the energy.</summary>
    public bool ByEnergy => Rank == 0;

    /// <summary>A fixed rank K ≥ 1 (checked against each matrix's min(m, n) when it is factored).</summary>
    public static RankChoice Fixed(int rank) => rank >= 1
        ? new RankChoice(rank, 0)
        : throw new ArgumentOutOfRangeException(nameof(rank), rank, $"rank: expected K ≥ 1; got {rank}");

    /// <summary>The smallest rank keeping at least <paramref name="energy"/> ∈ (0, 1] of Σσ².</summary>
    public static RankChoice KeepEnergy(double energy) => energy > 0 && energy <= 1
        ? new RankChoice(0, energy)
        : throw new ArgumentOutOfRangeException(nameof(energy), energy, $"energy: expected a fraction of the spectral energy in (0, 1]; got {energy}");

    /// <summary>
    /// The smallest K with Σ_{i&lt;K} σᵢ² ≥ <see cref="Energy"/> · Σ σᵢ² over the descending spectrum
    /// <paramref name="singularValues"/> (at least 1).
    /// </summary>
    public int RankFor(ReadOnlySpan<float> singularValues)
    {
        if (!ByEnergy) return Rank;
        double total = 0;
        foreach (float s in singularValues) total += (double)s * s;
        double target = Energy * total, kept = 0;
        for (int k = 0; k < singularValues.Length; k++)
        {
            kept += (double)singularValues[k] * singularValues[k];
            if (kept >= target) return k + 1;
        }
        return singularValues.Length;
    }

    /// <inheritdoc/>
    public override string ToString() => ByEnergy ? $"energy {Energy}" : $"rank {Rank}";
}

using LoraRuntime.Layers.Training;

namespace LoraRuntime.Layers.Serving;

/// <summary>
/// Draws tokens from logits without allocating: greedy (temperature 0: the first argmax), or softmax(logits / T) restricted
/// to the top K and then to the smallest set of most likely tokens whose mass reaches top-p. The one sampler of the
/// runtime: serving and <see cref="Generator"/> draw with it. Holds scratch for V logits: one sampler per thread.
/// </summary>
internal sealed class TokenSampler
{
    private readonly float[] _sorted;
    private readonly double[] _weights, _keys;
    private readonly int[] _indices;

    /// <summary>Scratch for a vocabulary of <paramref name="vocabulary"/> tokens.</summary>
    public TokenSampler(int vocabulary)
    {
        Guard.Positive(vocabulary, nameof(vocabulary));
        _sorted = new float[vocabulary];
        _weights = new double[vocabulary];
        _keys = new double[vocabulary];
        _indices = new int[vocabulary];
    }

    /// <summary>Throws an <see cref="ArgumentException"/> naming a bad option: temperature finite ≥ 0, top-k ≥ 0, top-p in (0, 1].</summary>
    public static void Validate(SamplingOptions sampling, float topP)
    {
        ArgumentNullException.ThrowIfNull(sampling);
        sampling.Validate();
        if (!(topP > 0 && topP <= 1)) throw new ArgumentOutOfRangeException(nameof(topP), topP, $"top_p: expected a value in (0, 1]; got {topP}");
    }

    /// <summary>A token from <paramref name="logits"/> (V values) drawn with <paramref name="random"/>.</summary>
    public int Sample(ReadOnlySpan<float> logits, SamplingOptions sampling, float topP, ref TrainingRandom random)
    {
        int v = logits.Length;
        if (v == 0 || v > _weights.Length) throw new ArgumentException($"logits: expected 1 to {_weights.Length} values; got {v}", nameof(logits));
        int best = 0;
        for (int i = 1; i < v; i++) if (logits[i] > logits[best]) best = i;
        if (sampling.Temperature == 0) return best;
        float cutoff = float.NegativeInfinity;
        if (sampling.TopK > 0 && sampling.TopK < v)
        {
            var sorted = _sorted.AsSpan(0, v);
            logits.CopyTo(sorted);
            sorted.Sort();
            cutoff = sorted[v - sampling.TopK];
        }
        double max = logits[best], sum = 0;
        var p = _weights.AsSpan(0, v);
        for (int i = 0; i < v; i++)
        {
            p[i] = logits[i] < cutoff ? 0 : Math.Exp((logits[i] - max) / sampling.Temperature);
            sum += p[i];
        }
        if (topP < 1) sum = KeepNucleus(p, sum, topP);
        double u = random.NextSingle() * sum;
        for (int i = 0; i < v; i++)
        {
            u -= p[i];
            if (u < 0) return i;
        }
        return best;
    }

    /// <summary>Zeroes every weight outside the most likely tokens whose mass first reaches topP·sum; returns the mass kept.</summary>
    private double KeepNucleus(Span<double> p, double sum, float topP)
    {
        int v = p.Length;
        var keys = _keys.AsSpan(0, v);
        var indices = _indices.AsSpan(0, v);
        for (int i = 0; i < v; i++)
        {
            keys[i] = -p[i];
            indices[i] = i;
        }
        keys.Sort(indices);
        double target = topP * sum, kept = 0;
        int k = 0;
        while (k < v && kept < target) kept -= keys[k++];
        for (int j = k; j < v; j++) p[indices[j]] = 0;
        return kept;
    }
}

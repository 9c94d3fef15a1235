using LoraRuntime.Layers.Training;

namespace LoraRuntime.Layers;

/// <summary>How tokens are drawn from the logits.</summary>
/// <param name="Temperature">Divides the logits; 0 means greedy (argmax).</param>
/// <param name="TopK">Keep the K most likely tokens (0: all).</param>
/// <param name="Seed">Seed of the draws.</param>
internal sealed record SamplingOptions(float Temperature = 0.8f, int TopK = 0, ulong Seed = 1337)
{
    /// <summary>Throws an <see cref="ArgumentException"/> naming the bad field.</summary>
    public void Validate()
    {
        if (!(Temperature >= 0) || float.IsInfinity(Temperature))
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "temperature must be finite and ≥ 0");
        if (TopK < 0) throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "top-k must be ≥ 0");
    }
}

/// <summary>
/// Autoregressive generation with a <see cref="GptModel"/> of batch 1: the context is cropped to the model's block size
/// and each step re-runs it (the KV-cache decoder belongs to serving). Deterministic for a seed.
/// </summary>
internal sealed class Generator : IDisposable
{
    private readonly GptModel _model;
    private readonly Tensor _ids;
    private readonly float[] _logits;
    private readonly int[] _window;

    /// <summary>A generator over <paramref name="model"/> (reserved for at least one sequence).</summary>
    public Generator(GptModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        _model = model;
        int t = model.Config.BlockSize;
        _ids = model.Parameters.Backend.Allocate(DType.I32, new Shape(t));
        _logits = new float[model.Config.Vocabulary];
        _window = new int[t];
    }

    /// <summary>Appends <paramref name="count"/> tokens to <paramref name="prompt"/> (non-empty ids in [0, V)) and returns them.</summary>
    public int[] Generate(ReadOnlySpan<int> prompt, int count, SamplingOptions sampling)
    {
        ArgumentNullException.ThrowIfNull(sampling);
        sampling.Validate();
        if (prompt.IsEmpty) throw new ArgumentException("prompt: expected at least one token", nameof(prompt));
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        int v = _model.Config.Vocabulary, block = _model.Config.BlockSize;
        foreach (int id in prompt)
            if ((uint)id >= (uint)v) throw new ArgumentOutOfRangeException(nameof(prompt), $"token {id} is outside [0, {v})");
        var tokens = new List<int>(prompt.Length + count);
        foreach (int id in prompt) tokens.Add(id);
        var random = new TrainingRandom(sampling.Seed);
        var backend = _model.Parameters.Backend;
        for (int i = 0; i < count; i++)
        {
            int t = Math.Min(block, tokens.Count);
            for (int j = 0; j < t; j++) _window[j] = tokens[tokens.Count - t + j];
            var ids = _ids.View(0, new Shape(1, t));
            backend.Upload(ids, _window.AsSpan(0, t));
            _model.Forward(ids);
            backend.Download(_model.Logits.View((long)(t - 1) * v, new Shape(v)), _logits);
            tokens.Add(Sample(_logits, sampling, ref random));
        }
        return tokens.ToArray();
    }

    /// <summary>A token from <paramref name="logits"/>: argmax at temperature 0, else softmax(logits / T) over the top K.</summary>
    internal static int Sample(Span<float> logits, SamplingOptions sampling, ref TrainingRandom random)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        if (sampling.Temperature == 0) return best;
        float cutoff = float.NegativeInfinity;
        if (sampling.TopK > 0 && sampling.TopK < logits.Length)
        {
            var sorted = logits.ToArray();
            Array.Sort(sorted);
            cutoff = sorted[^sampling.TopK];
        }
        double max = logits[best], sum = 0;
        Span<double> p = logits.Length <= 1024 ? stackalloc double[logits.Length] : new double[logits.Length];
        for (int i = 0; i < logits.Length; i++)
        {
            p[i] = logits[i] < cutoff ? 0 : Math.Exp((logits[i] - max) / sampling.Temperature);
            sum += p[i];
        }
        double u = random.NextSingle() * sum;
        for (int i = 0; i < p.Length; i++)
        {
            u -= p[i];
            if (u < 0) return i;
        }
        return best;
    }

    /// <summary>Returns the id buffer.</summary>
    public void Dispose() => _ids.Dispose();
}

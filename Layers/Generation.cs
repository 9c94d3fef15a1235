using LoraRuntime.Hosting;
using LoraRuntime.Layers.Serving;
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
/// Autoregressive generation with a <see cref="GptModel"/> through the serving path: a one-slot KV cache over the model's
/// own layers (<see cref="KvCacheDecoder"/>), so each new token is one decode step. The context is the last
/// <see cref="GptConfig.BlockSize"/> tokens; once it is longer, the window slides and is prefilled anew at each token
/// (learned positions restart at 0), as a model trained on windows of that size expects. Each call takes a fresh
/// snapshot of the model's weights and active adapters (folded in, evaluated without dropout). Tokens are drawn by
/// <see cref="TokenSampler"/>. Deterministic for a seed.
/// </summary>
internal sealed class Generator : IDisposable
{
    private readonly GptModel _model;
    private readonly KvCacheDecoder _decoder;
    private readonly PrefixForward _forward;
    private readonly TokenSampler _sampler;
    private readonly float[] _logits;
    private readonly int[] _window;

    /// <summary>A generator over <paramref name="model"/>: a cache of one sequence of its block size.</summary>
    public Generator(GptModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        _model = model;
        int t = model.Config.BlockSize;
        _decoder = new KvCacheDecoder(new ServingLayout(model), slots: 1, maxStepTokens: Math.Min(t, MaxPrefillChunk), maxRank: 1);
        _forward = new PrefixForward(_decoder, slot: 0);
        _sampler = new TokenSampler(model.Config.Vocabulary);
        _logits = new float[model.Config.Vocabulary];
        _window = new int[t];
    }

    /// <summary>The most tokens one prefill step carries (longer prompts go in chunks): bounds the step's scratch.</summary>
    private const int MaxPrefillChunk = 256;

    /// <summary>
    /// Appends up to <paramref name="count"/> tokens to <paramref name="prompt"/> (non-empty ids in [0, V)) and returns
    /// them: fewer when one of <paramref name="stopTokens"/> (the tokenizer's end of sequence) is drawn, which ends the
    /// sequence and is left out.
    /// </summary>
    public int[] Generate(ReadOnlySpan<int> prompt, int count, SamplingOptions sampling, IReadOnlyList<int>? stopTokens = null)
    {
        TokenSampler.Validate(sampling, topP: 1f);
        if (prompt.IsEmpty) throw new ArgumentException("prompt: expected at least one token", nameof(prompt));
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        int v = _model.Config.Vocabulary, block = _model.Config.BlockSize;
        foreach (int id in prompt)
            if ((uint)id >= (uint)v) throw new ArgumentOutOfRangeException(nameof(prompt), $"token {id} is outside [0, {v})");
        var tokens = new List<int>(prompt.Length + count);
        foreach (int id in prompt) tokens.Add(id);
        var random = new TrainingRandom(sampling.Seed);
        _decoder.RefreshWeights();
        _forward.Forget();
        for (int i = 0; i < count; i++)
        {
            int t = Math.Min(block, tokens.Count);
            for (int j = 0; j < t; j++) _window[j] = tokens[tokens.Count - t + j];
            // The window extends the cached one by a token (one decode step) until it slides (a prefill of the window).
            _forward.Run(_window.AsSpan(0, t), _logits, adapter: null, scale: 1f);
            int next = _sampler.Sample(_logits, sampling, 1f, ref random);
            if (stopTokens is not null && stopTokens.Contains(next)) break;
            tokens.Add(next);
        }
        return tokens.ToArray();
    }

    /// <summary>Returns the cache and the step's scratch.</summary>
    public void Dispose() => _decoder.Dispose();
}

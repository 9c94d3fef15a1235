using LoraRuntime.Layers;

namespace LoraRuntime.Hosting;

/// <summary>
/// What a <see cref="LoraEngine"/> reserves up front and where it runs. Every buffer a request touches — the KV cache of
/// <see cref="MaxBatch"/> sequences of <see cref="MaxSequence"/> tokens, the activations of a step of
/// <see cref="MaxStepTokens"/> tokens, the adapters' scratch for ranks up to <see cref="MaxRank"/> — is taken from the
/// device's pool when the engine is created; adapters' device copies come from the pool on first use, within
/// <see cref="AdapterBudgetBytes"/>.
/// </summary>
public sealed record EngineOptions
{
    /// <summary>
    /// "cpu", "cuda" or "auto" (CUDA when usable, else the CPU); null reads <c>LORA_DEVICE</c> (default auto): where
    /// <see cref="LoraEngine.Load"/> and <see cref="LoraEngine.CreateRandom"/> make the engine's backend.
    /// </summary>
    public string? Device { get; init; }

    /// <summary>
    /// How the base keeps its projection and embedding weights (float32, F16, BF16, Q8_0, Q4_0, NF4); null: as the
    /// checkpoint stores them on the CPU, float32 elsewhere (<see cref="WeightStorage.DefaultFor"/>).
    /// </summary>
    public WeightStorage? Storage { get; init; }

    /// <summary>Generations decoded together (continuous batching); more wait in a queue. ≥ 1.</summary>
    public int MaxBatch { get; init; } = 8;

    /// <summary>The longest sequence (prompt and generated tokens) a request may reach; null: the model's context (block size).</summary>
    public int? MaxSequence { get; init; }

    /// <summary>Tokens one decoder step may carry: decode rows plus prompt chunks (longer prompts are prefilled in chunks). ≥ 1.</summary>
    public int MaxStepTokens { get; init; } = 256;

    /// <summary>The largest adapter rank R served. ≥ 1.</summary>
    public int MaxRank { get; init; } = 64;

    /// <summary>Device memory for resident adapters; past it the least recently used idle adapter is evicted. &gt; 0.</summary>
    public long AdapterBudgetBytes { get; init; } = 256L << 20;

    /// <summary>The most adapters loaded at once (resident or not); a load past it is refused. ≥ 1.</summary>
    public int MaxAdapters { get; init; } = 256;

    /// <summary>Host memory for the loaded adapters' copies, resident or not; a load past it is refused. &gt; 0.</summary>
    public long AdapterHostBytes { get; init; } = 4L << 30;

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first bad field; <paramref name="blockSize"/> is the model's context.</summary>
    internal void Validate(int blockSize)
    {
        const string name = "options";
        if (MaxBatch < 1) throw new ArgumentOutOfRangeException(name, MaxBatch, $"options.MaxBatch: expected ≥ 1; got {MaxBatch}");
        if (MaxSequence is { } t && (t < 1 || t > blockSize))
            throw new ArgumentOutOfRangeException(name, t, $"options.MaxSequence: expected 1 to the model's context of {blockSize} tokens; got {t}");
        if (MaxStepTokens < 1) throw new ArgumentOutOfRangeException(name, MaxStepTokens, $"options.MaxStepTokens: expected ≥ 1; got {MaxStepTokens}");
        if (MaxRank < 1) throw new ArgumentOutOfRangeException(name, MaxRank, $"options.MaxRank: expected ≥ 1; got {MaxRank}");
        if (AdapterBudgetBytes < 1)
            throw new ArgumentOutOfRangeException(name, AdapterBudgetBytes, $"options.AdapterBudgetBytes: expected > 0; got {AdapterBudgetBytes}");
        if (MaxAdapters < 1) throw new ArgumentOutOfRangeException(name, MaxAdapters, $"options.MaxAdapters: expected ≥ 1; got {MaxAdapters}");
        if (AdapterHostBytes < 1)
            throw new ArgumentOutOfRangeException(name, AdapterHostBytes, $"options.AdapterHostBytes: expected > 0; got {AdapterHostBytes}");
    }
}

namespace LoraRuntime.Hosting;

/// <summary>How <see cref="LoraEngine.GenerateAsync(string, GenerationOptions?, CancellationToken)"/> generates.</summary>
public sealed record GenerationOptions
{
    /// <summary>The adapter's name (see <see cref="LoraEngine.LoadAdapter"/>), or null for the base model.</summary>
    public string? Adapter { get; init; }

    /// <summary>
    /// Multiplies the adapter's own scale (α/R, folded in at load) for this call: 1 as loaded, 0 the base model, any finite
    /// value (negative too) otherwise. Ignored without an <see cref="Adapter"/>.
    /// </summary>
    public float Scale { get; init; } = 1f;

    /// <summary>The most tokens to generate, 1 to the reserved sequence length; generation also ends when the sequence is full.</summary>
    public int MaxTokens { get; init; } = 16;

    /// <summary>Sampling temperature, finite and ≥ 0; 0 is greedy (the most likely token, deterministic).</summary>
    public float Temperature { get; init; }

    /// <summary>Sample among the K most likely tokens (0: all).</summary>
    public int TopK { get; init; }

    /// <summary>Nucleus sampling: keep the most likely tokens whose probability mass reaches this, in (0, 1] (1: all).</summary>
    public float TopP { get; init; } = 1f;

    /// <summary>The seed of the draws; null takes the next of the engine's own sequence of seeds.</summary>
    public ulong? Seed { get; init; }

    /// <summary>Up to 4 strings (1 to 64 characters) that end generation; the text returned stops before the first found.</summary>
    public IReadOnlyList<string> Stop { get; init; } = [];

    /// <summary>
    /// Generate past the tokenizer's end-of-sequence tokens (a fixed length, for benchmarks). By default the first one
    /// drawn ends the generation (finish reason "stop") and is not part of the result.
    /// </summary>
    public bool IgnoreEndOfSequence { get; init; }
}

/// <summary>What a generation produced, with its timings.</summary>
/// <param name="Text">The generated text (cut before a stop string); empty for an engine without a tokenizer.</param>
/// <param name="Tokens">The generated token ids.</param>
/// <param name="PromptTokens">The prompt's length in tokens.</param>
/// <param name="FinishReason">"stop" (a stop string or the end of sequence) or "length" (max tokens or a full sequence).</param>
/// <param name="Latency">From the call to the last token.</param>
/// <param name="FirstTokenLatency">From the call to the first token: time queued plus the prompt's prefill.</param>
public sealed record GenerationResult(string Text, int[] Tokens, int PromptTokens, string FinishReason, TimeSpan Latency, TimeSpan FirstTokenLatency)
{
    /// <summary>Tokens generated per second after the first (0 for a single token).</summary>
    public double DecodeTokensPerSecond =>
        Tokens.Length > 1 && Latency > FirstTokenLatency ? (Tokens.Length - 1) / (Latency - FirstTokenLatency).TotalSeconds : 0;
}

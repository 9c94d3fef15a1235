namespace LoraRuntime.Layers.Serving;

/// <summary>One generation request for a <see cref="BatchScheduler"/>.</summary>
internal sealed record CompletionRequest
{
    /// <summary>The adapter's name in the bank, or null for the base model.</summary>
    public string? Adapter { get; init; }

    /// <summary>
    /// Multiplies the adapter's scale (the s = α/R folded in at load) for this request: 1 runs it as loaded, 0 runs the
    /// base model, any finite value is allowed. Ignored without an <see cref="Adapter"/>.
    /// </summary>
    public float Scale { get; init; } = 1f;

    /// <summary>The prompt's ids: 1 to T (the block size) of them, each in [0, V).</summary>
    public required IReadOnlyList<int> Prompt { get; init; }

    /// <summary>The most tokens to generate (≥ 1); generation also ends when the context is full.</summary>
    public int MaxTokens { get; init; } = 16;

    /// <summary>Temperature (0: greedy), top-k and the seed of the draws.</summary>
    public SamplingOptions Sampling { get; init; } = new(Temperature: 0);

    /// <summary>Nucleus sampling: keep the most likely tokens whose mass reaches this, in (0, 1] (1: all).</summary>
    public float TopP { get; init; } = 1;

    /// <summary>Strings that end generation when the generated text contains one (the text returned stops before it).</summary>
    public IReadOnlyList<string> Stop { get; init; } = [];

    /// <summary>
    /// Generate past the tokenizer's end-of-sequence tokens (as vLLM's ignore_eos: benchmarks of a fixed length); by
    /// default one ends the generation, with finish reason "stop", and is not part of the result.
    /// </summary>
    public bool IgnoreEndOfSequence { get; init; }

    /// <summary>
    /// Report each generated token's log-probability and this many most likely alternatives (0 to
    /// <see cref="TokenLogprobs.MaxTop"/>); null: none.
    /// </summary>
    public int? Logprobs { get; init; }

    /// <summary>
    /// Called on the scheduler's thread with each generated token as it is drawn (a streamed response); it must neither
    /// block nor throw. An end-of-sequence token that ends the request is not passed.
    /// </summary>
    public Action<GeneratedToken>? OnToken { get; init; }
}

/// <summary>What a request produced.</summary>
/// <param name="Adapter">The adapter it ran with (null: the base).</param>
/// <param name="Tokens">The generated ids.</param>
/// <param name="Text">Their text (cut before a stop string), or empty without a tokenizer.</param>
/// <param name="FinishReason">"stop" (a stop string or the end of sequence) or "length" (max tokens or a full context).</param>
/// <param name="PromptTokens">The prompt's length.</param>
/// <param name="Latency">From submission to completion.</param>
/// <param name="FirstTokenLatency">From submission to the first generated token (queueing and prefill included).</param>
/// <param name="Logprobs">The tokens' log-probabilities, when the request asked for them.</param>
internal sealed record CompletionResult(string? Adapter, int[] Tokens, string Text, string FinishReason, int PromptTokens, TimeSpan Latency,
    TimeSpan FirstTokenLatency = default, TokenLogprobs? Logprobs = null);

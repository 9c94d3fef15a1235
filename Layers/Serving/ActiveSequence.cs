using System.Diagnostics;
using LoraRuntime.Layers.Text;
using LoraRuntime.Layers.Training;

namespace LoraRuntime.Layers.Serving;

/// <summary>
/// A request in a scheduler slot: its prompt, what it has generated, how much of it is in the KV cache, its draws, and
/// the text generated so far for stop strings. Everything a step touches is allocated at admission.
/// </summary>
internal sealed class ActiveSequence
{
    private readonly char[] _text;
    private readonly string[]? _pieces;
    private int _textLength;
    private long _firstToken;

    private readonly IReadOnlyList<int> _endOfSequence;
    private bool _ended;

    public ActiveSequence(PendingRequest pending, ServedAdapter? adapter, int slot, string[]? pieces, IReadOnlyList<int> endOfSequence)
    {
        _endOfSequence = endOfSequence;
        Pending = pending;
        Adapter = adapter;
        Slot = slot;
        var request = pending.Request;
        Prompt = [.. request.Prompt];
        Generated = new int[request.MaxTokens];
        if (request.Logprobs is int top)
            Logprobs = new TokenLogprobs(new float[request.MaxTokens], new int[request.MaxTokens * top], new float[request.MaxTokens * top], top);
        Random = new TrainingRandom(request.Sampling.Seed);
        _pieces = request.Stop.Count > 0 ? pieces : null;
        int longest = 0;
        if (_pieces is not null) foreach (var p in _pieces) longest = Math.Max(longest, p.Length);
        _text = new char[_pieces is null ? 0 : request.MaxTokens * longest];
    }

    public PendingRequest Pending { get; }
    public CompletionRequest Request => Pending.Request;
    public ServedAdapter? Adapter { get; }
    public int Slot { get; }
    public int[] Prompt { get; }
    public int[] Generated { get; }
    public int GeneratedCount { get; private set; }

    /// <summary>The generated tokens' log-probabilities (filled by the scheduler before each append), when asked for.</summary>
    public TokenLogprobs? Logprobs { get; }

    /// <summary>Tokens already in the cache.</summary>
    public int Cached { get; set; }

    /// <summary>When the last token was drawn (Stopwatch ticks): the inter-token latencies' start.</summary>
    public long LastTokenTicks { get; set; }

    public TrainingRandom Random;

    /// <summary>Where the text stops: the index of the first stop string found, or −1.</summary>
    public int StopAt { get; private set; } = -1;

    /// <summary>Prompt tokens and generated tokens fed so far and to come: the next token to feed is at Cached.</summary>
    public int Fed => Prompt.Length + GeneratedCount;

    /// <summary>The token at position <paramref name="i"/> of the sequence (prompt, then generated).</summary>
    public int TokenAt(int i) => i < Prompt.Length ? Prompt[i] : Generated[i - Prompt.Length];

    /// <summary>
    /// Appends a generated token; returns true when it finishes the request (max tokens, a stop string, a full context,
    /// or an end-of-sequence token, which is not appended).
    /// </summary>
    public bool Append(int token, int blockSize)
    {
        if (GeneratedCount == 0) _firstToken = Stopwatch.GetTimestamp();
        for (int i = 0; i < _endOfSequence.Count; i++) // an index loop: foreach over the interface would allocate an enumerator
            if (_endOfSequence[i] == token)
                return _ended = true;
        int index = GeneratedCount;
        Generated[GeneratedCount++] = token;
        if (Request.OnToken is { } onToken)
            onToken(Logprobs is { } lp
                ? new GeneratedToken(token, lp.Chosen[index], lp.TopIds.AsMemory(index * lp.TopCount, lp.TopCount), lp.TopLogprobs.AsMemory(index * lp.TopCount, lp.TopCount))
                : new GeneratedToken(token, 0, default, default));
        if (_pieces is not null && FindStop(_pieces[token])) return true;
        return GeneratedCount == Generated.Length || Fed > blockSize;
    }

    /// <summary>The generated text: up to the stop string when one was found.</summary>
    public string Text(ITokenizer? tokenizer) =>
        StopAt >= 0 ? new string(_text, 0, StopAt) : tokenizer is null ? "" : DecodeKnown(tokenizer, Generated.AsSpan(0, GeneratedCount));

    public string FinishReason => StopAt >= 0 || _ended ? "stop" : "length";

    public CompletionResult Result(ITokenizer? tokenizer) =>
        new(Request.Adapter, Generated[..GeneratedCount], Text(tokenizer), FinishReason, Prompt.Length, Stopwatch.GetElapsedTime(Pending.Submitted),
            _firstToken != 0 ? Stopwatch.GetElapsedTime(Pending.Submitted, _firstToken) : TimeSpan.Zero,
            Logprobs is { } lp ? new TokenLogprobs(lp.Chosen[..GeneratedCount], lp.TopIds[..(GeneratedCount * lp.TopCount)], lp.TopLogprobs[..(GeneratedCount * lp.TopCount)], lp.TopCount) : null);

    /// <summary>
    /// The text of <paramref name="ids"/>, leaving out ids past the tokenizer's vocabulary (a model's V may be padded past
    /// it, as GPT-2 checkpoints' 50304 for a 50257-token BPE): they have no text.
    /// </summary>
    internal static string DecodeKnown(ITokenizer tokenizer, ReadOnlySpan<int> ids)
    {
        int known = tokenizer.VocabularySize, count = 0;
        foreach (int id in ids) if ((uint)id < (uint)known) count++;
        if (count == ids.Length) return tokenizer.Decode(ids);
        var kept = new int[count];
        count = 0;
        foreach (int id in ids) if ((uint)id < (uint)known) kept[count++] = id;
        return tokenizer.Decode(kept);
    }

    private bool FindStop(string piece)
    {
        piece.CopyTo(_text.AsSpan(_textLength));
        _textLength += piece.Length;
        var text = _text.AsSpan(0, _textLength);
        var stops = Request.Stop;
        for (int i = 0; i < stops.Count; i++) // an index loop: foreach over the interface would allocate an enumerator
        {
            string stop = stops[i];
            // Only a match that ends in the new piece is new.
            int from = Math.Max(0, _textLength - piece.Length - stop.Length + 1);
            int at = text[from..].IndexOf(stop.AsSpan(), StringComparison.Ordinal);
            if (at >= 0) StopAt = StopAt < 0 ? from + at : Math.Min(StopAt, from + at);
        }
        return StopAt >= 0;
    }
}

/// <summary>A submitted request waiting for a slot, with its completion.</summary>
internal sealed class PendingRequest
{
    private readonly CancellationTokenRegistration _registration;

    public PendingRequest(CompletionRequest request, CancellationToken cancellation)
    {
        Request = request;
        Cancellation = cancellation;
        // A cancelled request's caller hears at once, even while the scheduler is busy or the request still waits for a
        // slot; the scheduler drops it at its next admission or step.
        _registration = cancellation.Register(static state => ((PendingRequest)state!).CancelNow(), this);
        Completion.Task.ContinueWith(static (_, state) => ((PendingRequest)state!)._registration.Dispose(), this, CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    public CompletionRequest Request { get; }
    public CancellationToken Cancellation { get; }
    public long Submitted { get; } = Stopwatch.GetTimestamp();
    public TaskCompletionSource<CompletionResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private void CancelNow() => Completion.TrySetCanceled(Cancellation);
}

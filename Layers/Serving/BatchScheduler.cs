using System.Diagnostics;
using LoraRuntime.Layers.Text;

namespace LoraRuntime.Layers.Serving;

/// <summary>
/// Continuous batching over one <see cref="KvCacheDecoder"/>: callers on any thread submit requests; one scheduler thread
/// admits waiting requests into free cache slots between steps (pinning their adapters in the bank), runs one step over
/// every active request — decode rows first, then prompt chunks in what is left of the step's token budget — samples each
/// row's next token, and retires finished requests, completing their tasks. A step at a steady batch allocates nothing.
/// Thread-safe: <see cref="SubmitAsync"/>, <see cref="Validate"/>, the counters and <see cref="Dispose"/> may be called
/// from any thread.
/// </summary>
internal sealed class BatchScheduler : IDisposable
{
    private readonly KvCacheDecoder _decoder;
    private readonly AdapterBank _bank;
    private readonly ITokenizer? _tokenizer;
    private readonly string[]? _pieces;
    private readonly TokenSampler _sampler;
    private readonly Queue<PendingRequest> _pending = new();
    private readonly ActiveSequence?[] _slots;
    private readonly DecodeRow[] _rows;
    private readonly ActiveSequence[] _rowSequence;
    private readonly int[] _tokens;
    private readonly float[] _logits;
    private readonly ManualResetEventSlim _wake = new(false);
    private readonly Thread? _thread;
    private volatile bool _stopping;
    private int _active;

    /// <summary>
    /// A scheduler over <paramref name="decoder"/> and <paramref name="bank"/>; <paramref name="tokenizer"/> (optional)
    /// gives text and stop strings. With <paramref name="start"/>, its thread starts at once.
    /// </summary>
    public BatchScheduler(KvCacheDecoder decoder, AdapterBank bank, ITokenizer? tokenizer = null, bool start = true)
        : this(decoder, bank, tokenizer, start, decoder?.Slots ?? 0)
    {
    }

    /// <summary>A scheduler that runs its requests in the decoder's first <paramref name="slots"/> slots only (the others are the caller's).</summary>
    internal BatchScheduler(KvCacheDecoder decoder, AdapterBank bank, ITokenizer? tokenizer, bool start, int slots)
    {
        ArgumentNullException.ThrowIfNull(decoder);
        ArgumentNullException.ThrowIfNull(bank);
        if (bank.Layout != decoder.Layout) throw new ArgumentException("bank: the bank serves another model than the decoder", nameof(bank));
        if (tokenizer is not null && tokenizer.VocabularySize > decoder.Vocabulary)
            throw new ArgumentException($"tokenizer: the tokenizer has {tokenizer.VocabularySize} ids; the model has only V = {decoder.Vocabulary}", nameof(tokenizer));
        if (slots < 1 || slots > decoder.Slots)
            throw new ArgumentOutOfRangeException(nameof(slots), slots, $"slots: expected 1 to the decoder's {decoder.Slots} slots; got {slots}");
        _decoder = decoder;
        _bank = bank;
        _tokenizer = tokenizer;
        Meter = new ServingMeter(new ServingMeter.Gauges(() => PendingCount, () => ActiveCount, KvCacheUsage, () => _bank.Stats.Loaded,
            () => _bank.BudgetBytes > 0 ? (double)_bank.Stats.ResidentBytes / _bank.BudgetBytes : 0));
        if (tokenizer is not null)
        {
            // One piece per model id; ids past the tokenizer's vocabulary (a padded V) have no text.
            int known = tokenizer.VocabularySize;
            _pieces = new string[decoder.Vocabulary];
            for (int i = 0; i < _pieces.Length; i++) _pieces[i] = i < known ? tokenizer.Decode([i]) : "";
        }
        _sampler = new TokenSampler(decoder.Vocabulary);
        _slots = new ActiveSequence?[slots];
        _rows = new DecodeRow[slots];
        _rowSequence = new ActiveSequence[slots];
        _tokens = new int[decoder.MaxStepTokens];
        _logits = new float[decoder.Slots * decoder.Vocabulary];
        if (!start) return;
        _thread = new Thread(Loop) { IsBackground = true, Name = "lora-scheduler" };
        _thread.Start();
    }

    /// <summary>Requests, tokens, step time and latencies.</summary>
    public ServingMetrics Metrics { get; } = new();

    /// <summary>The instruments exporters read (the meter <see cref="ServingMeter.Name"/>).</summary>
    internal ServingMeter Meter { get; }

    /// <summary>The adapter tag of requests without an adapter (a server's name for its base model).</summary>
    public string BaseName { get; set; } = "base";

    /// <summary>The decoder the requests run on.</summary>
    public KvCacheDecoder Decoder => _decoder;

    /// <summary>The adapters.</summary>
    public AdapterBank Bank => _bank;

    /// <summary>The tokenizer, when there is one.</summary>
    public ITokenizer? Tokenizer => _tokenizer;

    /// <summary>Held while a step runs: whoever else drives the decoder (in slots the scheduler does not use) takes it too.</summary>
    internal Lock StepLock { get; } = new();

    /// <summary>Requests in slots now.</summary>
    public int ActiveCount => Volatile.Read(ref _active);

    /// <summary>Requests waiting for a slot.</summary>
    public int PendingCount
    {
        get
        {
            lock (_pending) return _pending.Count;
        }
    }

    /// <summary>The most requests that may wait for a slot; past it <see cref="SubmitAsync"/> refuses (a server answers 429).</summary>
    public int MaxPending
    {
        get => _maxPending;
        set => _maxPending = value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, $"MaxPending: expected ≥ 0; got {value}");
    }

    private int _maxPending = int.MaxValue;

    /// <summary>Requests waiting for or holding a slot that run with the adapter <paramref name="name"/>.</summary>
    public int RequestsUsing(string name)
    {
        int count = 0;
        lock (_pending)
            foreach (var p in _pending)
                if (p.Request.Adapter == name) count++;
        foreach (var seq in _slots) // read from another thread: a count for a decision, not a lock on the slots
            if (seq is not null && seq.Request.Adapter == name) count++;
        return count;
    }

    /// <summary>
    /// Queues <paramref name="request"/>; the task completes with its result, or fails with an
    /// <see cref="ArgumentException"/> (bad request, unknown adapter), <see cref="OperationCanceledException"/> or
    /// <see cref="ObjectDisposedException"/>. The request is checked here, before it is queued; a full queue
    /// (<see cref="MaxPending"/>) throws <see cref="SchedulerFullException"/>.
    /// </summary>
    public Task<CompletionResult> SubmitAsync(CompletionRequest request, CancellationToken cancellation = default)
    {
        Validate(request);
        var pending = new PendingRequest(request, cancellation);
        lock (_pending)
        {
            ObjectDisposedException.ThrowIf(_stopping, this);
            if (_pending.Count >= _maxPending) DropCancelled();
            if (_pending.Count >= _maxPending)
                throw new SchedulerFullException($"the queue is full: {_pending.Count} requests wait for one of {_slots.Length} slots; retry later");
            _pending.Enqueue(pending);
        }
        _wake.Set();
        return pending.Completion.Task;
    }

    /// <summary>Checks a request against the model and the bank: prompt length and ids, max tokens, sampling, stop strings, adapter.</summary>
    public void Validate(CompletionRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(request.Prompt, nameof(request.Prompt));
        int t = _decoder.BlockSize, v = _decoder.Vocabulary;
        if (request.Prompt.Count < 1 || request.Prompt.Count > t)
            throw new ArgumentException($"prompt: expected 1 to {t} tokens (the model's context); got {request.Prompt.Count}", "prompt");
        for (int i = 0; i < request.Prompt.Count; i++)
            if ((uint)request.Prompt[i] >= (uint)v)
                throw new ArgumentException($"prompt: token {i} is {request.Prompt[i]}, outside [0, {v})", "prompt");
        if (request.MaxTokens < 1 || request.MaxTokens > t)
            throw new ArgumentException($"max_tokens: expected 1 to {t}; got {request.MaxTokens}", "max_tokens");
        TokenSampler.Validate(request.Sampling, request.TopP);
        ArgumentNullException.ThrowIfNull(request.Stop, nameof(request.Stop));
        if (!float.IsFinite(request.Scale))
            throw new ArgumentOutOfRangeException("scale", request.Scale, $"scale: expected a finite multiplier of the adapter's scale; got {request.Scale}");
        if (request.Stop.Count > 0 && _tokenizer is null) throw new ArgumentException("stop: stop strings need a tokenizer", "stop");
        if (request.Stop.Count > 4 || request.Stop.Any(s => string.IsNullOrEmpty(s) || s.Length > 64))
            throw new ArgumentException("stop: expected at most 4 non-empty strings of at most 64 characters", "stop");
        if (request.Logprobs is { } top && (top < 0 || top > Math.Min(TokenLogprobs.MaxTop, v)))
            throw new ArgumentException($"logprobs: expected 0 to {Math.Min(TokenLogprobs.MaxTop, v)} alternatives; got {top}", "logprobs");
        if (request.Adapter is { } name && !_bank.TryGet(name, out _))
            throw new ArgumentException($"model: no adapter '{name}' is loaded; loaded: {string.Join(", ", _bank.Names)}", "model");
    }

    /// <summary>
    /// One scheduling step on the caller's thread (the scheduler's own thread, or a test's when built without
    /// starting): admit, run, sample, retire. Returns the rows run (0 when idle).
    /// </summary>
    internal int Step()
    {
        // Idle, it leaves the decoder (and the lock) alone: a forward pass on another thread then never waits for it.
        if (Volatile.Read(ref _active) == 0 && PendingCount == 0) return 0;
        lock (StepLock) return StepLocked();
    }

    private int StepLocked()
    {
        Admit();
        int count = 0, total = 0, budget = _decoder.MaxStepTokens;
        // Decode rows (one token each) first: a long prompt cannot stall the requests already generating.
        for (int s = 0; s < _slots.Length; s++)
        {
            var seq = _slots[s];
            if (seq is null || Retired(seq) || seq.Cached < seq.Prompt.Length) continue;
            _tokens[total++] = seq.TokenAt(seq.Cached);
            _rowSequence[count] = seq;
            _rows[count++] = new DecodeRow(s, seq.Cached, 1, seq.Adapter, seq.Request.Scale);
        }
        for (int s = 0; s < _slots.Length && total < budget; s++)
        {
            var seq = _slots[s];
            if (seq is null || seq.Cached >= seq.Prompt.Length) continue;
            int n = Math.Min(seq.Prompt.Length - seq.Cached, budget - total);
            seq.Prompt.AsSpan(seq.Cached, n).CopyTo(_tokens.AsSpan(total));
            total += n;
            _rowSequence[count] = seq;
            _rows[count++] = new DecodeRow(s, seq.Cached, n, seq.Adapter, seq.Request.Scale);
        }
        if (count == 0) return 0;
        long started = Stopwatch.GetTimestamp();
        _decoder.Forward(_rows.AsSpan(0, count), _tokens.AsSpan(0, total), _logits);
        int generated = 0;
        int v = _decoder.Vocabulary;
        long now = Stopwatch.GetTimestamp();
        for (int k = 0; k < count; k++)
        {
            var seq = _rowSequence[k];
            seq.Cached += _rows[k].Count;
            if (seq.Cached < seq.Fed) continue; // a prompt chunk that is not the last
            var request = seq.Request;
            var logits = _logits.AsSpan(k * v, v);
            int token = _sampler.Sample(logits, request.Sampling, request.TopP, ref seq.Random);
            if (seq.Logprobs is { } lp && seq.GeneratedCount < lp.Chosen.Length)
            {
                int at = seq.GeneratedCount, top = lp.TopCount;
                lp.Chosen[at] = TokenLogprobs.Compute(logits, token, lp.TopIds.AsSpan(at * top, top), lp.TopLogprobs.AsSpan(at * top, top));
            }
            generated++;
            int before = seq.GeneratedCount;
            bool done = seq.Append(token, _decoder.BlockSize);
            if (seq.GeneratedCount > before)
            {
                var adapter = ServingMeter.Adapter(request.Adapter ?? BaseName);
                Meter.GeneratedTokens.Add(1, adapter);
                if (before == 0) Meter.TimeToFirstToken.Record(Stopwatch.GetElapsedTime(seq.Pending.Submitted, now).TotalSeconds, adapter);
                else Meter.InterTokenLatency.Record(Stopwatch.GetElapsedTime(seq.LastTokenTicks, now).TotalSeconds, adapter);
            }
            seq.LastTokenTicks = now;
            if (done) Retire(seq, null);
        }
        Metrics.RecordStep(count, generated, Stopwatch.GetTimestamp() - started);
        return count;
    }

    /// <summary>Stops the thread and fails every waiting and running request with <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        lock (_pending) _stopping = true;
        _wake.Set();
        _thread?.Join();
        var error = new ObjectDisposedException(nameof(BatchScheduler), "the scheduler was shut down");
        lock (_pending)
            while (_pending.TryDequeue(out var p))
            {
                Metrics.RecordFailure();
                p.Completion.TrySetException(error);
            }
        foreach (var seq in _slots) if (seq is not null) Retire(seq, error);
        _wake.Dispose();
        Meter.Dispose();
    }

    private void Loop()
    {
        while (!_stopping)
        {
            _wake.Reset();
            int rows;
            try
            {
                rows = Step();
            }
            catch (Exception e)
            {
                // A step that fails takes its requests with it; the scheduler itself keeps serving.
                foreach (var seq in _slots) if (seq is not null) Retire(seq, e);
                rows = 0;
            }
            if (rows == 0 && PendingCount == 0) _wake.Wait(250);
            else if (rows == 0) _wake.Wait(5); // waiting for adapter memory held by running requests
        }
    }

    private void Admit()
    {
        for (int s = 0; s < _slots.Length; s++)
        {
            if (_slots[s] is not null) continue;
            PendingRequest? next;
            ServedAdapter? adapter = null;
            lock (_pending)
            {
                if (!_pending.TryPeek(out next)) return;
                if (next.Cancellation.IsCancellationRequested)
                {
                    _pending.Dequeue();
                    Metrics.RecordCancellation();
                    Ended(next.Request, "cancelled");
                    next.Completion.TrySetCanceled(next.Cancellation);
                    s--;
                    continue;
                }
                try
                {
                    if (next.Request.Adapter is { } name && (adapter = _bank.TryAcquire(name)) is null) return; // no room until a request ends
                }
                catch (ArgumentException e)
                {
                    _pending.Dequeue();
                    Metrics.RecordFailure();
                    Ended(next.Request, "failed");
                    next.Completion.TrySetException(e); // unloaded since it was submitted
                    s--;
                    continue;
                }
                _pending.Dequeue();
            }
            _slots[s] = new ActiveSequence(next, adapter, s, _pieces, next.Request.IgnoreEndOfSequence ? [] : _tokenizer?.EndOfSequence ?? []);
            Interlocked.Increment(ref _active);
        }
    }

    /// <summary>True (and the request retired) when its caller cancelled it.</summary>
    private bool Retired(ActiveSequence seq)
    {
        if (!seq.Pending.Cancellation.IsCancellationRequested) return false;
        Retire(seq, new OperationCanceledException(seq.Pending.Cancellation));
        return true;
    }

    private void Retire(ActiveSequence seq, Exception? error)
    {
        if (_slots[seq.Slot] != seq) return;
        _slots[seq.Slot] = null;
        Interlocked.Decrement(ref _active);
        if (seq.Adapter is not null) _bank.Release(seq.Adapter);
        var adapter = ServingMeter.Adapter(seq.Request.Adapter ?? BaseName);
        Meter.PromptTokens.Add(seq.Prompt.Length, adapter);
        Meter.RequestDuration.Record(Stopwatch.GetElapsedTime(seq.Pending.Submitted).TotalSeconds, adapter);
        Ended(seq.Request, error is null ? "completed" : error is OperationCanceledException ? "cancelled" : "failed");
        if (error is null)
        {
            var result = seq.Result(_tokenizer);
            Metrics.RecordCompletion(result.Latency);
            seq.Pending.Completion.TrySetResult(result);
            return;
        }
        if (error is OperationCanceledException) Metrics.RecordCancellation();
        else Metrics.RecordFailure();
        if (error is OperationCanceledException) seq.Pending.Completion.TrySetCanceled(seq.Pending.Cancellation);
        else seq.Pending.Completion.TrySetException(error);
    }

    /// <summary>
    /// Removes the waiting requests whose callers have cancelled them (their tasks have ended already), so that they no
    /// longer count against <see cref="MaxPending"/>. Under the queue's lock; only when the queue is full.
    /// </summary>
    private void DropCancelled()
    {
        int count = _pending.Count;
        for (int i = 0; i < count; i++)
        {
            var p = _pending.Dequeue();
            if (!p.Cancellation.IsCancellationRequested)
            {
                _pending.Enqueue(p);
                continue;
            }
            Metrics.RecordCancellation();
            Ended(p.Request, "cancelled");
            p.Completion.TrySetCanceled(p.Cancellation);
        }
    }

    private void Ended(CompletionRequest request, string outcome) =>
        Meter.Requests.Add(1, ServingMeter.Adapter(request.Adapter ?? BaseName), ServingMeter.Outcome(outcome));

    /// <summary>Tokens in the cache over its capacity (slots × context), read when an exporter collects.</summary>
    private double KvCacheUsage()
    {
        long cached = 0;
        foreach (var seq in _slots) if (seq is not null) cached += seq.Cached;
        return (double)cached / ((long)_slots.Length * _decoder.BlockSize);
    }
}

/// <summary>The scheduler's queue holds <see cref="BatchScheduler.MaxPending"/> requests already: retry later.</summary>
internal sealed class SchedulerFullException(string message) : InvalidOperationException(message);

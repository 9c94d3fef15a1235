using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Serving;
using LoraRuntime.Layers.Text;

namespace LoraRuntime.Hosting;

/// <summary>
/// The runtime as a service embeds it: a base model loaded once, LoRA adapters loaded and unloaded by name, forward
/// passes and generations each with its own adapter and scale, every buffer reserved up front (<see cref="EngineOptions"/>).
/// Generations go through continuous batching (requests decoded together, each row with its own adapter); a forward
/// runs on the caller's thread in a KV-cache slot of its own, between batching steps, and allocates nothing at a steady
/// shape.
/// <para>
/// Thread-safety: every member may be called from any thread at the same time, except <see cref="Dispose"/>, which
/// fails the generations still running (<see cref="ObjectDisposedException"/>) and must not race other calls.
/// </para>
/// <para>
/// Exceptions: bad input (an option, a token, an unknown adapter) is an <see cref="ArgumentException"/> naming the
/// argument, what was expected and what was given; a file that is missing or malformed is an <see cref="IOException"/>
/// (<see cref="FileNotFoundException"/>, <see cref="InvalidDataException"/>); a device or library failure is a
/// <see cref="LoraDeviceException"/>; a pool or adapter budget that cannot hold what is asked is an
/// <see cref="InsufficientMemoryException"/>; a cancelled generation is an <see cref="OperationCanceledException"/>.
/// </para>
/// </summary>
public sealed class LoraEngine : IDisposable
{
    private readonly Backend? _ownedBackend;
    private readonly GptModel? _ownedModel;
    private readonly GptModel _model;
    private readonly ServingLayout _layout;
    private readonly AdapterBank _bank;
    private readonly KvCacheDecoder _decoder;
    private readonly BatchScheduler _scheduler;
    private readonly PrefixForward _forward;
    private readonly ServingMetrics _forwardMetrics = new();
    private readonly ConcurrentDictionary<string, ChatTemplate> _adapterTemplates = new(StringComparer.Ordinal);
    private long _seeds;
    private volatile bool _disposed;

    private LoraEngine(GptModel model, ITokenizer? tokenizer, ModelLayout layout, EngineOptions options, Backend? ownedBackend, GptModel? ownedModel,
        string deviceReason)
    {
        _model = model;
        DeviceReason = deviceReason;
        _ownedBackend = ownedBackend;
        _ownedModel = ownedModel;
        Tokenizer = tokenizer;
        Options = options;
        _layout = new ServingLayout(model, layout);
        int slots = options.MaxBatch + 1; // the last slot is the forward pass's
        _bank = new AdapterBank(_layout, options.AdapterBudgetBytes, options.MaxRank) { MaxAdapters = options.MaxAdapters, MaxHostBytes = options.AdapterHostBytes };
        try
        {
            _decoder = new KvCacheDecoder(_layout, slots, Math.Max(options.MaxStepTokens, slots), options.MaxRank, options.MaxSequence);
            try
            {
                _scheduler = new BatchScheduler(_decoder, _bank, tokenizer, start: true, slots: options.MaxBatch);
            }
            catch
            {
                _decoder.Dispose();
                throw;
            }
        }
        catch
        {
            _bank.Dispose();
            throw;
        }
        _forward = new PrefixForward(_decoder, slots - 1);
    }

    /// <summary>
    /// Creates a backend for <see cref="EngineOptions.Device"/> and loads the model directory
    /// <paramref name="modelDirectory"/> — ours (written by <c>lora train</c>) or a Hugging Face GPT-2 checkpoint with its
    /// BPE tokenizer (vocab.json, merges.txt) — reserving what <paramref name="options"/> asks for.
    /// </summary>
    public static LoraEngine Load(string modelDirectory, EngineOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modelDirectory);
        options ??= new EngineOptions();
        var template = ChatTemplate.Of(modelDirectory); // read first: a broken template fails before memory is reserved
        var engine = Own(options, backend => ModelDirectory.Load(backend, modelDirectory, maxBatch: 1,
            storage: options.Storage ?? WeightStorage.DefaultFor(backend)), "loading the model");
        engine.ChatTemplate = template;
        return engine;
    }

    /// <summary>The model's chat template (from its tokenizer_config.json), or null: <see cref="ChatTemplate.Plain"/> is used.</summary>
    internal ChatTemplate? ChatTemplate { get; set; }

    /// <summary>The chat template for <paramref name="adapter"/>: its own when it carries one, else the model's, else the plain one.</summary>
    internal ChatTemplate ChatTemplateFor(string? adapter) =>
        (adapter is not null && _adapterTemplates.TryGetValue(adapter, out var own) ? own : null) ?? ChatTemplate ?? Layers.Text.ChatTemplate.Plain;

    /// <summary>
    /// This engine as a Microsoft.Extensions.AI chat client: messages rendered by the chat template of the adapter
    /// (<see cref="Microsoft.Extensions.AI.ChatOptions.ModelId"/>; null or <paramref name="baseName"/>: the base model) or
    /// of the model, generated until the end of the turn. See <see cref="LoraChatClient"/>.
    /// </summary>
    public LoraChatClient AsChatClient(string baseName = LoraChatClient.DefaultBaseName) => new(this, baseName);

    /// <summary>
    /// Creates a backend for <see cref="EngineOptions.Device"/> and a model of shape <paramref name="config"/> with random
    /// weights — GPT-2's initialisation (N(0, 0.02²), the projections into the residual stream scaled by 1/√(2L)),
    /// reproducible from <paramref name="seed"/> — reserving what <paramref name="options"/> asks for: for benchmarks and
    /// tests of a service, where the weights do not matter but the shapes and the timings do. The engine has no tokenizer
    /// (token ids only); its adapters name modules as <paramref name="layout"/> does, so a GPT-2-shaped model with
    /// <see cref="ModelLayout.Gpt2"/> takes PEFT adapters made for GPT-2.
    /// </summary>
    public static LoraEngine CreateRandom(GptConfig config, ulong seed, EngineOptions? options = null, ModelLayout layout = ModelLayout.LoraRuntime)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (!Enum.IsDefined(layout)) throw new ArgumentOutOfRangeException(nameof(layout), layout, $"layout: expected {string.Join(" or ", Enum.GetNames<ModelLayout>())}; got {layout}");
        config.Validate();
        options ??= new EngineOptions();
        options.Validate(config.BlockSize); // before a backend and a model are made for nothing
        return Own(options, backend =>
        {
            var model = new GptModel(backend, config, maxBatch: 1, training: false, trainParameters: false);
            try
            {
                model.Initialize(seed, scaleResidual: true);
            }
            catch
            {
                model.Dispose();
                throw;
            }
            return (model, (ITokenizer?)null, layout);
        }, "initialising the model");
    }

    /// <summary>
    /// An engine over <paramref name="model"/> (built for inference, on its own backend), with <paramref name="tokenizer"/>
    /// for text (null: token ids only), its adapters named as <paramref name="layout"/> names modules. The caller keeps
    /// ownership of the model and its backend: dispose them after the engine. The engine snapshots the model's weights.
    /// For the CLI and the tests, which build models themselves.
    /// </summary>
    internal static LoraEngine Create(GptModel model, ITokenizer? tokenizer = null, EngineOptions? options = null, ModelLayout layout = ModelLayout.LoraRuntime)
    {
        ArgumentNullException.ThrowIfNull(model);
        options ??= new EngineOptions();
        options.Validate(model.Config.BlockSize);
        if (tokenizer is not null && tokenizer.VocabularySize > model.Config.Vocabulary)
            throw new ArgumentException($"tokenizer: it has {tokenizer.VocabularySize} tokens; the model has only V = {model.Config.Vocabulary}", nameof(tokenizer));
        var backend = model.Parameters.Backend;
        return DeviceCall(() => new LoraEngine(model, tokenizer, layout, options, null, null, "the model's own backend"), backend, "reserving the engine's memory");
    }

    /// <summary>
    /// An engine that owns its backend (made for <see cref="EngineOptions.Device"/>) and the model <paramref name="make"/>
    /// builds on it; whatever fails on the way disposes what was made.
    /// </summary>
    private static LoraEngine Own(EngineOptions options, Func<Backend, (GptModel Model, ITokenizer? Tokenizer, ModelLayout Layout)> make, string making)
    {
        var (backend, reason) = CreateBackend(options.Device);
        GptModel? model = null;
        try
        {
            var (made, tokenizer, layout) = DeviceCall(() => make(backend), backend, making);
            model = made;
            options.Validate(model.Config.BlockSize);
            return DeviceCall(() => new LoraEngine(made, tokenizer, layout, options, backend, made, reason), backend, "reserving the engine's memory");
        }
        catch
        {
            model?.Dispose();
            backend.Dispose();
            throw;
        }
    }

    /// <summary>What the engine reserved.</summary>
    public EngineOptions Options { get; }

    /// <summary>The model's shape.</summary>
    public GptConfig Config => _model.Config;

    /// <summary>Text to ids and back, or null for an engine that takes token ids only (the CLI's HTTP API and the tests use it).</summary>
    internal ITokenizer? Tokenizer { get; }

    /// <summary>
    /// True when the engine has a tokenizer (a loaded model directory has one; a random model has none): then
    /// <see cref="Encode"/>, <see cref="Decode"/> and the text overloads work.
    /// </summary>
    public bool HasTokenizer => Tokenizer is not null;

    /// <summary>How the model's checkpoint (and its adapters) name modules.</summary>
    public ModelLayout Layout => _layout.ModelLayout;

    /// <summary>The device's name ("cpu", "cuda:0").</summary>
    public string Device => _model.Parameters.Backend.Name;

    /// <summary>Why this device: what was asked for and what the CUDA probe found ("the CPU, because CUDA is unavailable: …").</summary>
    public string DeviceReason { get; }

    /// <summary>V: logits per position, ids in [0, V).</summary>
    public int Vocabulary => _model.Config.Vocabulary;

    /// <summary>The longest sequence a call may reach (<see cref="EngineOptions.MaxSequence"/>, else the model's context).</summary>
    public int MaxSequence => _decoder.BlockSize;

    /// <summary>The loaded adapters' names, sorted.</summary>
    public IReadOnlyList<string> Adapters => _bank.Names;

    /// <summary>
    /// Loads the PEFT adapter in <paramref name="directory"/> (adapter_config.json, adapter_model.safetensors; module
    /// names as the model's layout gives them) as <paramref name="name"/>. Its device copy is made at its first use.
    /// </summary>
    public AdapterInfo LoadAdapter(string name, string directory)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        var template = Directory.Exists(directory) ? Layers.Text.ChatTemplate.Of(directory) : null; // the chat template it carries, if any
        var adapter = _bank.Load(name, directory);
        if (template is not null) _adapterTemplates[name] = template;
        else _adapterTemplates.TryRemove(name, out _);
        return new AdapterInfo(adapter.Name, adapter.ModuleCount, adapter.MaxRank, adapter.Bytes);
    }

    /// <summary>
    /// Unloads <paramref name="name"/>: new calls no longer find it; generations running with it finish with it, then its
    /// memory is returned. False when no adapter has that name.
    /// </summary>
    public bool UnloadAdapter(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(name);
        bool unloaded = _bank.Unload(name);
        if (unloaded) _adapterTemplates.TryRemove(name, out _);
        return unloaded;
    }

    /// <summary>
    /// logits[0, V) = the model's logits for the token after <paramref name="tokens"/> (1 to <see cref="MaxSequence"/>
    /// ids in [0, V)), with <paramref name="adapter"/> (null: the base) at <paramref name="scale"/> times its scale. Runs
    /// on the caller's thread, between generation steps (which wait for it), and allocates nothing once the adapter is
    /// resident and the prompt length has been seen (a new length builds its views of the scratch once). Calls that
    /// extend the previous call's tokens (same adapter and scale) reuse its KV cache: a call one token longer is one
    /// decode step.
    /// </summary>
    public void Forward(ReadOnlySpan<int> tokens, Span<float> logits, string? adapter = null, float scale = 1f)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        long started = Stopwatch.GetTimestamp();
        CheckTokens(tokens, nameof(tokens));
        if (logits.Length < Vocabulary)
            throw new ArgumentException($"logits: expected room for V = {Vocabulary} values; got {logits.Length}", nameof(logits));
        CheckScale(scale, nameof(scale));
        var served = adapter is null ? null : Acquire(adapter);
        try
        {
            lock (_scheduler.StepLock) _forward.Run(tokens, logits, served, scale);
        }
        catch (Exception e) when (LoraDeviceException.IsDeviceFailure(e))
        {
            throw new LoraDeviceException($"forward on {Device} failed: {e.Message}", e);
        }
        finally
        {
            if (served is not null) _bank.Release(served);
        }
        long ended = Stopwatch.GetTimestamp();
        _forwardMetrics.RecordStep(1, 0, ended - started);
        _forwardMetrics.RecordCompletion(Stopwatch.GetElapsedTime(started, ended));
    }

    /// <summary>
    /// The logits [V] for the token after <paramref name="text"/>, encoded as a prompt (see
    /// <see cref="GenerateAsync(string, GenerationOptions?, CancellationToken)"/> and
    /// <see cref="Forward(ReadOnlySpan{int}, Span{float}, string?, float)"/>), in a new array.
    /// </summary>
    public float[] Forward(string text, string? adapter = null, float scale = 1f)
    {
        var logits = new float[Vocabulary];
        Forward(EncodeArgument(text, nameof(text), asPrompt: true), logits, adapter, scale);
        return logits;
    }

    /// <summary>
    /// Generates a continuation of <paramref name="prompt"/> (encoded as a prompt: <see cref="Encode"/>'s ids within the
    /// special tokens the tokenizer puts around a text, such as Llama's begin-of-text) as
    /// <paramref name="options"/> say, batched with the other callers' generations. Cancelling
    /// <paramref name="cancellation"/> ends it (in the queue, or between steps) with an <see cref="OperationCanceledException"/>.
    /// </summary>
    public Task<GenerationResult> GenerateAsync(string prompt, GenerationOptions? options = null, CancellationToken cancellation = default) =>
        GenerateAsync(EncodeArgument(prompt, nameof(prompt), asPrompt: true), options, cancellation);

    /// <summary>Generates a continuation of the token ids <paramref name="prompt"/>; see <see cref="GenerateAsync(string, GenerationOptions?, CancellationToken)"/>.</summary>
    public async Task<GenerationResult> GenerateAsync(IReadOnlyList<int> prompt, GenerationOptions? options = null, CancellationToken cancellation = default)
    {
        var request = Request(prompt, options);
        CompletionResult result;
        try
        {
            result = await _scheduler.SubmitAsync(request, cancellation).ConfigureAwait(false);
        }
        catch (Exception e) when (LoraDeviceException.IsDeviceFailure(e))
        {
            throw new LoraDeviceException($"generation on {Device} failed: {e.Message}", e);
        }
        return new GenerationResult(result.Text, result.Tokens, result.PromptTokens, result.FinishReason, result.Latency, result.FirstTokenLatency);
    }

    /// <summary>The scheduler's request for a generation of <paramref name="prompt"/>, every option checked.</summary>
    private CompletionRequest Request(IReadOnlyList<int> prompt, GenerationOptions? options)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(prompt);
        options ??= new GenerationOptions();
        if (prompt.Count < 1 || prompt.Count > MaxSequence)
            throw new ArgumentException($"prompt: expected 1 to {MaxSequence} tokens (the reserved sequence length); got {prompt.Count}", nameof(prompt));
        if (options.MaxTokens < 1 || options.MaxTokens > MaxSequence)
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxTokens, $"options.MaxTokens: expected 1 to {MaxSequence}; got {options.MaxTokens}");
        CheckScale(options.Scale, nameof(options));
        if (options.Adapter is { } name && !_bank.TryGet(name, out _)) throw UnknownAdapter(name, nameof(options));
        if (options.Stop.Count > 0 && Tokenizer is null)
            throw new ArgumentException("options.Stop: stop strings need a tokenizer; this engine takes token ids only", nameof(options));
        return new CompletionRequest
        {
            Adapter = options.Adapter,
            Scale = options.Scale,
            Prompt = prompt,
            MaxTokens = options.MaxTokens,
            Sampling = new SamplingOptions(options.Temperature, options.TopK, options.Seed ?? (ulong)Interlocked.Increment(ref _seeds)),
            TopP = options.TopP,
            Stop = options.Stop,
            IgnoreEndOfSequence = options.IgnoreEndOfSequence,
        };
    }

    /// <summary>
    /// Generates a continuation of the token ids <paramref name="prompt"/> as <see cref="GenerateAsync(IReadOnlyList{int}, GenerationOptions?, CancellationToken)"/>
    /// does, giving its text piece by piece as tokens are drawn (text that could still be part of a stop string, or half
    /// a character, waits for the next), then the result. The pieces join to the result's text.
    /// </summary>
    internal async IAsyncEnumerable<(string Text, GenerationResult? Result)> StreamAsync(IReadOnlyList<int> prompt, GenerationOptions? options,
        [EnumeratorCancellation] CancellationToken cancellation = default)
    {
        var tokenizer = Tokenizer ?? throw NoTokenizer();
        var tokens = Channel.CreateUnbounded<int>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var request = Request(prompt, options) with { OnToken = t => tokens.Writer.TryWrite(t.Id) };
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        var task = _scheduler.SubmitAsync(request, linked.Token);
        _ = task.ContinueWith(_ => tokens.Writer.TryComplete(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        var text = new StreamedText(tokenizer, request.Stop);
        try
        {
            await foreach (int token in tokens.Reader.ReadAllAsync(cancellation).ConfigureAwait(false))
            {
                string piece = text.Add(token);
                if (piece.Length > 0) yield return (piece, null);
            }
        }
        finally
        {
            linked.Cancel(); // a caller that stops reading ends the generation
        }
        var result = await task.ConfigureAwait(false);
        string rest = text.Finish(result.Text);
        yield return (rest, new GenerationResult(result.Text, result.Tokens, result.PromptTokens, result.FinishReason, result.Latency, result.FirstTokenLatency));
    }

    /// <summary>
    /// The token ids of <paramref name="text"/> (non-empty), as the model's tokenizer gives them: text it cannot represent
    /// (a character outside the vocabulary of a character model) is an <see cref="ArgumentException"/>. Without a
    /// tokenizer (<see cref="HasTokenizer"/>), an <see cref="InvalidOperationException"/>.
    /// </summary>
    public int[] Encode(string text)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return EncodeArgument(text, nameof(text));
    }

    /// <summary>
    /// The text of the token ids <paramref name="tokens"/> (each in [0, V)). Without a tokenizer
    /// (<see cref="HasTokenizer"/>), an <see cref="InvalidOperationException"/>.
    /// </summary>
    public string Decode(ReadOnlySpan<int> tokens)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var tokenizer = Tokenizer ?? throw NoTokenizer();
        for (int i = 0; i < tokens.Length; i++)
            if ((uint)tokens[i] >= (uint)tokenizer.VocabularySize)
                throw new ArgumentOutOfRangeException(nameof(tokens), tokens[i],
                    $"tokens: token {i} is {tokens[i]}, outside the tokenizer's [0, {tokenizer.VocabularySize})");
        return tokenizer.Decode(tokens);
    }

    /// <summary>A consistent snapshot of the pool's, the adapters', the generations' and the forward passes' counters (allocates).</summary>
    public EngineStats Stats
    {
        get
        {
            var forward = _forwardMetrics.Snapshot();
            return new EngineStats(Device, _model.Parameters.Backend.Pool.Stats, _bank.Stats, _scheduler.Metrics.Snapshot(),
                new LatencyStats(forward.Requests, forward.LatencyP50Ms, forward.LatencyP99Ms, forward.LatencyP999Ms), _scheduler.ActiveCount, _scheduler.PendingCount);
        }
    }

    /// <summary>The adapters (for <c>lora serve</c>'s HTTP API, which works on the bank and the scheduler directly).</summary>
    internal AdapterBank Bank => _bank;

    /// <summary>The continuous-batching scheduler every generation goes through.</summary>
    internal BatchScheduler Scheduler => _scheduler;

    /// <summary>Tokens the last forward pass found in its cache and did not recompute (for tests and benchmarks).</summary>
    internal int LastForwardReused => _forward.Reused;

    /// <summary>Stops generating (running and queued generations fail with <see cref="ObjectDisposedException"/>) and returns every reservation.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _scheduler.Dispose();
        _decoder.Dispose();
        _bank.Dispose();
        _ownedModel?.Dispose();
        _ownedBackend?.Dispose();
    }

    private static (Backend Backend, string Reason) CreateBackend(string? device)
    {
        try
        {
            var choice = Devices.Choose(device);
            return (Devices.Create(choice), choice.Reason);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"options.Device: {e.Message}", "options", e);
        }
        catch (Exception e) when (e is InvalidOperationException || LoraDeviceException.IsDeviceFailure(e))
        {
            throw new LoraDeviceException($"options.Device = {device ?? "(" + Devices.EnvironmentVariable + ")"}: {e.Message}", e);
        }
    }

    /// <summary>Runs <paramref name="call"/>, turning a device failure into a <see cref="LoraDeviceException"/> that says what was being done.</summary>
    private static T DeviceCall<T>(Func<T> call, Backend backend, string what)
    {
        try
        {
            return call();
        }
        catch (Exception e) when (LoraDeviceException.IsDeviceFailure(e))
        {
            throw new LoraDeviceException($"{what} on {backend.Name} failed: {e.Message}", e);
        }
    }

    private ServedAdapter Acquire(string name)
    {
        if (!_bank.TryGet(name, out var known)) throw UnknownAdapter(name, "adapter");
        ServedAdapter? served;
        try
        {
            served = _bank.TryAcquire(name);
        }
        catch (ArgumentException)
        {
            throw UnknownAdapter(name, "adapter"); // unloaded meanwhile
        }
        return served ?? throw new InsufficientMemoryException(
            $"adapter '{name}' needs {known.Bytes} bytes of the adapter budget of {_bank.BudgetBytes} bytes, which the adapters of running generations hold; retry when they finish, or raise EngineOptions.AdapterBudgetBytes");
    }

    private ArgumentException UnknownAdapter(string name, string parameter) =>
        new($"{(parameter == "options" ? "options.Adapter" : parameter)}: no adapter '{name}' is loaded; loaded: {(_bank.Names.Count == 0 ? "none" : string.Join(", ", _bank.Names))}", parameter);

    private void CheckTokens(ReadOnlySpan<int> tokens, string name)
    {
        if (tokens.Length < 1 || tokens.Length > MaxSequence)
            throw new ArgumentException($"{name}: expected 1 to {MaxSequence} tokens (the reserved sequence length); got {tokens.Length}", name);
        for (int i = 0; i < tokens.Length; i++)
            if ((uint)tokens[i] >= (uint)Vocabulary)
                throw new ArgumentOutOfRangeException(name, tokens[i], $"{name}: token {i} is {tokens[i]}, outside [0, V = {Vocabulary})");
    }

    private static void CheckScale(float scale, string name)
    {
        if (!float.IsFinite(scale))
            throw new ArgumentOutOfRangeException(name, scale, $"{(name == "options" ? "options.Scale" : name)}: expected a finite multiplier of the adapter's scale; got {scale}");
    }

    private static InvalidOperationException NoTokenizer() =>
        new("this engine has no tokenizer (a random model has none): pass token ids, or load a model directory with its tokenizer");

    private int[] EncodeArgument(string text, string name, bool asPrompt = false)
    {
        ArgumentNullException.ThrowIfNull(text, name);
        if (Tokenizer is null) throw NoTokenizer();
        if (text.Length == 0) throw new ArgumentException($"{name}: expected a non-empty text", name);
        try
        {
            return asPrompt ? Tokenizer.EncodePrompt(text) : Tokenizer.Encode(text);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{name}: {e.Message}", name, e);
        }
    }
}

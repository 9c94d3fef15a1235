using LoraRuntime.Hosting;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Serving;
using LoraRuntime.Layers.Text;

namespace LoraRuntime.Cli.Serve;

/// <summary>What <c>lora serve</c> was asked for, validated.</summary>
/// <param name="Slots">Requests decoded together (KV-cache slots).</param>
/// <param name="MaxStepTokens">Tokens one step may carry (decode rows plus prompt chunks).</param>
/// <param name="MaxRank">The largest adapter rank served.</param>
/// <param name="AdapterBudgetBytes">Device memory for resident adapters; past it the least recently used is evicted.</param>
/// <param name="BaseName">The model name that selects the base model without an adapter.</param>
/// <param name="ApiKey">The key every request must bear (<c>Authorization: Bearer KEY</c>); null: no key asked for.</param>
/// <param name="AllowAdapterLoading">Whether <c>POST /adapters</c> and <c>DELETE /adapters/{name}</c> are served.</param>
/// <param name="AdapterRoot">The folder adapters loaded over HTTP must lie in (required with <paramref name="AllowAdapterLoading"/>).</param>
/// <param name="MaxQueue">Requests that may wait for a slot; past it a request gets 429 with Retry-After.</param>
/// <param name="RequestTimeout">A request's deadline from its arrival; past it, it is cancelled (504, or an error event when streaming).</param>
/// <param name="MaxAdapters">Adapters the server holds at once; a load past it is refused.</param>
/// <param name="AdapterHostBytes">Host memory for the loaded adapters; a load past it is refused.</param>
/// <param name="Storage">How the base keeps its weights (null: <see cref="WeightStorage.DefaultFor"/>).</param>
internal sealed record ServeOptions(int Slots = 32, int MaxStepTokens = 256, int MaxRank = 64, long AdapterBudgetBytes = 256L << 20, string BaseName = "base",
    string? ApiKey = null, bool AllowAdapterLoading = false, string? AdapterRoot = null, int MaxQueue = 256, TimeSpan? RequestTimeout = null,
    int MaxAdapters = 64, long AdapterHostBytes = 1L << 30, WeightStorage? Storage = null);

/// <summary>
/// One served model: the base loaded once and the <see cref="LoraEngine"/> over it, whose adapter bank and scheduler
/// every HTTP request goes through. The scheduler's thread is the only one that runs generations.
/// </summary>
internal sealed class ServingHost : IDisposable
{
    private ServingHost(GptModel model, LoraEngine engine, ServeOptions options, AdapterRoot? root)
    {
        Model = model;
        Engine = engine;
        Options = options;
        Root = root;
    }

    /// <summary>Loads adapter <paramref name="name"/> from <paramref name="directory"/> with the chat template it carries, if any.</summary>
    public LoraRuntime.Hosting.AdapterInfo LoadAdapter(string name, string directory) => Engine.LoadAdapter(name, directory);

    /// <summary>Unloads adapter <paramref name="name"/> and forgets its template; false when it is not loaded.</summary>
    public bool UnloadAdapter(string name) => Engine.UnloadAdapter(name);

    /// <summary>When the server started, in Unix seconds (its models' "created").</summary>
    public long Started { get; } = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    /// <summary>Where adapters loaded over HTTP must lie; null when loading over HTTP is off.</summary>
    public AdapterRoot? Root { get; }

    public GptModel Model { get; }
    public LoraEngine Engine { get; }
    public ServeOptions Options { get; }
    public ITokenizer Tokenizer => Engine.Tokenizer!;
    public AdapterBank Bank => Engine.Bank;
    public BatchScheduler Scheduler => Engine.Scheduler;
    public Backend Backend => Model.Parameters.Backend;

    /// <summary>
    /// Loads the model directory <paramref name="baseDir"/> (ours, or a Hugging Face GPT-2 checkpoint with its BPE
    /// tokenizer) and the named PEFT adapters (module names as the base's layout gives them).
    /// </summary>
    public static ServingHost Open(Backend backend, string baseDir, IEnumerable<(string Name, string Directory)> adapters, ServeOptions options)
    {
        if (options.ApiKey is { Length: 0 }) throw new ArgumentException("--api-key: expected a non-empty key", nameof(options));
        if (options.MaxQueue < 0) throw new ArgumentException($"--max-queue: expected ≥ 0; got {options.MaxQueue}", nameof(options));
        if (options.RequestTimeout is { } timeout && timeout <= TimeSpan.Zero)
            throw new ArgumentException($"--request-timeout: expected a positive number of seconds; got {timeout.TotalSeconds}", nameof(options));
        if (options.AllowAdapterLoading && options.AdapterRoot is null)
            throw new ArgumentException("--allow-adapter-loading: needs --adapter-root DIR, the one folder adapters may be loaded from", nameof(options));
        var root = options.AllowAdapterLoading ? new AdapterRoot(options.AdapterRoot!) : null;
        var (model, tokenizer, layout) = ModelDirectory.Load(backend, baseDir, maxBatch: 1, storage: options.Storage ?? WeightStorage.DefaultFor(backend));
        LoraEngine? engine = null;
        try
        {
            engine = LoraEngine.Create(model, tokenizer, new EngineOptions
            {
                MaxBatch = options.Slots, MaxStepTokens = options.MaxStepTokens, MaxRank = options.MaxRank, AdapterBudgetBytes = options.AdapterBudgetBytes,
                MaxAdapters = options.MaxAdapters, AdapterHostBytes = options.AdapterHostBytes,
            }, layout);
            engine.Scheduler.MaxPending = options.MaxQueue;
            engine.Scheduler.BaseName = options.BaseName;
            engine.ChatTemplate = ChatTemplate.Of(baseDir);
            var host = new ServingHost(model, engine, options, root);
            foreach (var (name, directory) in adapters)
            {
                if (name == options.BaseName) throw new ArgumentException($"--adapter: '{name}' is the base model's name; choose another", nameof(adapters));
                host.LoadAdapter(name, directory);
            }
            return host;
        }
        catch
        {
            engine?.Dispose();
            model.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        Engine.Dispose();
        Model.Dispose();
    }
}

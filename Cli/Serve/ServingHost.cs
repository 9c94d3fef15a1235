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
internal sealed record ServeOptions(int Slots = 32, int MaxStepTokens = 256, int MaxRank = 64, long AdapterBudgetBytes = 256L << 20, string BaseName = "base");

/// <summary>
/// One served model: the base loaded once and the <see cref="LoraEngine"/> over it, whose adapter bank and scheduler
/// every HTTP request goes through. The scheduler's thread is the only one that runs generations.
/// </summary>
internal sealed class ServingHost : IDisposable
{
    private ServingHost(GptModel model, LoraEngine engine, ServeOptions options)
    {
        Model = model;
        Engine = engine;
        Options = options;
    }

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
        var (model, tokenizer, layout) = ModelDirectory.Load(backend, baseDir, maxBatch: 1);
        LoraEngine? engine = null;
        try
        {
            engine = LoraEngine.Create(model, tokenizer, new EngineOptions
            {
                MaxBatch = options.Slots, MaxStepTokens = options.MaxStepTokens, MaxRank = options.MaxRank, AdapterBudgetBytes = options.AdapterBudgetBytes,
            }, layout);
            foreach (var (name, directory) in adapters)
            {
                if (name == options.BaseName) throw new ArgumentException($"--adapter: '{name}' is the base model's name; choose another", nameof(adapters));
                engine.LoadAdapter(name, directory);
            }
            return new ServingHost(model, engine, options);
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

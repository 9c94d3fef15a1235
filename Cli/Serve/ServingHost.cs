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
/// One served model: the base loaded once, its adapter bank, the KV-cache decoder and the scheduler every HTTP request
/// goes through. The scheduler's thread is the only one that touches the model.
/// </summary>
internal sealed class ServingHost : IDisposable
{
    private ServingHost(GptModel model, ITokenizer tokenizer, ModelLayout modelLayout, ServeOptions options)
    {
        Model = model;
        Tokenizer = tokenizer;
        Options = options;
        Layout = new ServingLayout(model, modelLayout);
        Bank = new AdapterBank(Layout, options.AdapterBudgetBytes, options.MaxRank);
        Decoder = new KvCacheDecoder(Layout, options.Slots, options.MaxStepTokens, options.MaxRank);
        Scheduler = new BatchScheduler(Decoder, Bank, tokenizer);
    }

    public GptModel Model { get; }
    public ITokenizer Tokenizer { get; }
    public ServeOptions Options { get; }
    public ServingLayout Layout { get; }
    public AdapterBank Bank { get; }
    public KvCacheDecoder Decoder { get; }
    public BatchScheduler Scheduler { get; }
    public Backend Backend => Model.Parameters.Backend;

    /// <summary>
    /// Loads the model directory <paramref name="baseDir"/> (ours, or a Hugging Face GPT-2 checkpoint with its BPE
    /// tokenizer) and the named PEFT adapters (module names as the base's layout gives them).
    /// </summary>
    public static ServingHost Open(Backend backend, string baseDir, IEnumerable<(string Name, string Directory)> adapters, ServeOptions options)
    {
        var (model, tokenizer, modelLayout) = ModelDirectory.Load(backend, baseDir, maxBatch: 1);
        ServingHost? host = null;
        try
        {
            host = new ServingHost(model, tokenizer, modelLayout, options);
            foreach (var (name, directory) in adapters)
            {
                if (name == options.BaseName) throw new ArgumentException($"--adapter: '{name}' is the base model's name; choose another", nameof(adapters));
                host.Bank.Load(name, directory);
            }
            return host;
        }
        catch
        {
            if (host is not null) host.Dispose();
            else model.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        Scheduler.Dispose();
        Decoder.Dispose();
        Bank.Dispose();
        Model.Dispose();
    }
}

using System.CommandLine;
using LoraRuntime.Cli.Bench;
using LoraRuntime.Cli.Serve;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Hosting;

namespace LoraRuntime.Cli.Commands;

/// <summary><c>lora serve</c>: an OpenAI-style completions server over a base model and many LoRA adapters at once.</summary>
internal static class ServeCommand
{
    /// <summary>The command.</summary>
    public static Command Create(Terminal terminal)
    {
        var baseDir = new Option<string>("--base") { Description = "a model directory: written by lora train, or a Hugging Face GPT-2 or Llama-family checkpoint with its tokenizer", Required = true };
        var adapters = new Option<string[]>("--adapter")
        {
            Description = "a PEFT adapter to serve under a name (repeatable): NAME=DIR", HelpName = "NAME=DIR", AllowMultipleArgumentsPerToken = false,
        };
        var urls = new Option<string>("--urls") { Description = "where to listen (semicolon-separated)", DefaultValueFactory = _ => "http://127.0.0.1:8080" };
        var slots = new Option<int>("--slots") { Description = "requests decoded together (KV-cache slots)", DefaultValueFactory = _ => 32 };
        var stepTokens = new Option<int>("--max-step-tokens") { Description = "tokens one step may carry (decode rows plus prompt chunks)", DefaultValueFactory = _ => 256 };
        var maxRank = new Option<int>("--max-rank") { Description = "the largest adapter rank served", DefaultValueFactory = _ => 64 };
        var budget = new Option<int>("--adapter-budget-mb") { Description = "device memory for resident adapters (LRU eviction past it)", DefaultValueFactory = _ => 256 };
        var baseName = new Option<string>("--base-name") { Description = "the model name that selects the base model", DefaultValueFactory = _ => "base" };
        var device = new Option<string?>("--device") { Description = "cpu, cuda or auto (default: $LORA_DEVICE, else auto)" };
        var apiKey = new Option<string?>("--api-key") { Description = "the key every request must bear (Authorization: Bearer KEY); default: $LORA_API_KEY, else none", HelpName = "KEY" };
        var allowLoading = new Option<bool>("--allow-adapter-loading") { Description = "serve POST /adapters and DELETE /adapters/{name} (off by default)" };
        var adapterRoot = new Option<string?>("--adapter-root") { Description = "the one folder adapters may be loaded from over HTTP (links resolved)", HelpName = "DIR" };
        var maxQueue = new Option<int>("--max-queue") { Description = "requests that may wait for a slot; past it, 429 with Retry-After", DefaultValueFactory = _ => 256 };
        var timeout = new Option<double>("--request-timeout") { Description = "seconds a request may take from its arrival; past it, it is cancelled (504)", DefaultValueFactory = _ => 600 };
        var maxAdapters = new Option<int>("--max-adapters") { Description = "adapters held at once; a load past it is refused", DefaultValueFactory = _ => 64 };
        var adapterMemory = new Option<int>("--adapter-memory-mb") { Description = "host memory for the loaded adapters; a load past it is refused", DefaultValueFactory = _ => 1024 };
        var quantize = QuantizeOption.Create();
        var command = new Command("serve", "Serve completions for a base model and many adapters at once (continuous batching, per-row adapters)")
        {
            baseDir, adapters, urls, slots, stepTokens, maxRank, budget, baseName, device, apiKey, allowLoading, adapterRoot, maxQueue, timeout,
            maxAdapters, adapterMemory, quantize,
        };
        command.SetAction(parse => CliAction.Run(terminal, () =>
        {
            double seconds = parse.GetValue(timeout);
            if (!(seconds > 0) || !double.IsFinite(seconds)) throw new UsageException($"--request-timeout: expected a positive number of seconds; got {seconds}");
            var options = new ServeOptions(
                BenchData.Positive(parse.GetValue(slots), "--slots"), BenchData.Positive(parse.GetValue(stepTokens), "--max-step-tokens"),
                BenchData.Positive(parse.GetValue(maxRank), "--max-rank"), (long)BenchData.Positive(parse.GetValue(budget), "--adapter-budget-mb") << 20,
                parse.GetValue(baseName) ?? "base",
                ApiKey: parse.GetValue(apiKey) ?? NonEmpty(Environment.GetEnvironmentVariable("LORA_API_KEY")),
                AllowAdapterLoading: parse.GetValue(allowLoading), AdapterRoot: parse.GetValue(adapterRoot),
                MaxQueue: parse.GetValue(maxQueue), RequestTimeout: TimeSpan.FromSeconds(seconds),
                MaxAdapters: BenchData.Positive(parse.GetValue(maxAdapters), "--max-adapters"),
                AdapterHostBytes: (long)BenchData.Positive(parse.GetValue(adapterMemory), "--adapter-memory-mb") << 20);
            if (options.AdapterRoot is not null && !options.AllowAdapterLoading)
                throw new UsageException("--adapter-root: has no effect without --allow-adapter-loading");
            if (options.MaxStepTokens < options.Slots) throw new UsageException($"--max-step-tokens: expected ≥ --slots = {options.Slots}; got {options.MaxStepTokens}");
            var named = (parse.GetValue(adapters) ?? []).Select(ParseAdapter).ToList();
            using var backend = BenchOptions.CreateBackend(parse.GetValue(device));
            options = options with { Storage = QuantizeOption.Read(parse.GetValue(quantize), backend) };
            ServingHost host;
            try
            {
                host = ServingHost.Open(backend, parse.GetValue(baseDir)!, named, options);
            }
            catch (Exception e) when (e is ArgumentException or IOException)
            {
                throw new UsageException(e.Message);
            }
            using (host)
            {
                string where = parse.GetValue(urls)!;
                var app = ServeApi.Build(host, where);
                try
                {
                    app.Start();
                }
                catch (Exception e) when (e is IOException or FormatException or InvalidOperationException or ArgumentException
                    or System.Net.Sockets.SocketException)
                {
                    throw new UsageException($"--urls: cannot listen on '{where}': {e.Message}");
                }
                var c = host.Model.Config;
                terminal.ErrorWriter.WriteLine($"lora serve: L {c.Layers}, C {c.Channels}, V {c.Vocabulary}, T {c.BlockSize} on {backend.Name}, adapters [{string.Join(", ", host.Bank.Names)}], listening on {string.Join(", ", app.Urls)}"
                    + $"{(options.ApiKey is null ? " without an API key" : ", API key required")}{(host.Root is { } root ? $", adapters loadable from {root.Directory}" : "")}; Ctrl+C stops");
                app.WaitForShutdown();
                app.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
            return ExitCodes.Success;
        }));
        return command;
    }

    private static string? NonEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;

    private static (string Name, string Directory) ParseAdapter(string spec)
    {
        int eq = spec.IndexOf('=');
        if (eq <= 0 || eq == spec.Length - 1) throw new UsageException($"--adapter: expected NAME=DIR; got '{spec}'");
        return (spec[..eq], spec[(eq + 1)..]);
    }
}

using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using LoraRuntime.Cli.Bench;
using LoraRuntime.IO;
using LoraRuntime.Layers;
using Spectre.Console;

namespace LoraRuntime.Cli.Commands;

/// <summary>
/// <c>lora bench http</c>: a bounded load of streamed completions on <c>lora serve</c> over loopback — clients over
/// mixed adapters, some leaving mid-stream, 429s retried — with time to first token and inter-token latency
/// percentiles, memory after warm-up and at the end, and every completed stream checked against the whole answer.
/// </summary>
internal static class BenchHttpCommand
{
    /// <summary>The command.</summary>
    public static Command Create(Terminal terminal)
    {
        var layers = new Option<int>("--layers") { Description = "L", DefaultValueFactory = _ => 4 };
        var heads = new Option<int>("--heads") { Description = "NH", DefaultValueFactory = _ => 12 };
        var channels = new Option<int>("--channels") { Description = "C", DefaultValueFactory = _ => 768 };
        var vocabulary = new Option<int>("--vocab") { Description = "V (a character vocabulary, at most 50000)", DefaultValueFactory = _ => 512 };
        var context = new Option<int>("--context") { Description = "T, the context", DefaultValueFactory = _ => 256 };
        var adapters = new Option<int>("--adapters") { Description = "adapters served beside the base", DefaultValueFactory = _ => 4 };
        var rank = new Option<int>("--rank") { Description = "R of every adapter (q, k, v, o)", DefaultValueFactory = _ => 16 };
        var clients = new Option<int>("--clients") { Description = "concurrent clients", DefaultValueFactory = _ => 16 };
        var requests = new Option<int>("--requests") { Description = "streamed requests per client", DefaultValueFactory = _ => 8 };
        var prompt = new Option<int>("--prompt-tokens") { Description = "tokens of each prompt", DefaultValueFactory = _ => 32 };
        var maxTokens = new Option<int>("--max-tokens") { Description = "tokens each request generates", DefaultValueFactory = _ => 64 };
        var slots = new Option<int>("--slots") { Description = "requests decoded together", DefaultValueFactory = _ => 8 };
        var maxQueue = new Option<int>("--max-queue") { Description = "requests that may wait (past it: 429, retried)", DefaultValueFactory = _ => 4 };
        var disconnect = new Option<int>("--disconnect-every") { Description = "every k-th request leaves mid-stream (0: none)", DefaultValueFactory = _ => 5 };
        var device = new Option<string?>("--device") { Description = "cpu, cuda or auto (default: $LORA_DEVICE, else auto)" };
        var json = new Option<string?>("--json") { Description = "also write the result as JSON to FILE (atomically)", HelpName = "FILE" };
        var command = new Command("http", "Load lora serve over loopback with streamed completions: TTFT and inter-token latency, 429s, disconnects, memory")
        {
            layers, heads, channels, vocabulary, context, adapters, rank, clients, requests, prompt, maxTokens, slots, maxQueue, disconnect, device, json,
        };
        command.SetAction(parse => CliAction.Run(terminal, () =>
        {
            int v = BenchData.Positive(parse.GetValue(vocabulary), "--vocab");
            if (v > 50000) throw new UsageException($"--vocab: expected at most 50000 (a character vocabulary); got {v}");
            var config = new GptConfig(v, BenchData.Positive(parse.GetValue(layers), "--layers"), BenchData.Positive(parse.GetValue(heads), "--heads"),
                BenchData.Positive(parse.GetValue(channels), "--channels"), BenchData.Positive(parse.GetValue(context), "--context"));
            Training.TrainingOptions.Check(config.Validate, "--layers/--heads/--channels");
            int every = parse.GetValue(disconnect), queue = parse.GetValue(maxQueue), adapterCount = parse.GetValue(adapters);
            if (every < 0) throw new UsageException($"--disconnect-every: expected ≥ 0; got {every}");
            if (queue < 1) throw new UsageException($"--max-queue: expected ≥ 1; got {queue}");
            if (adapterCount < 0) throw new UsageException($"--adapters: expected ≥ 0; got {adapterCount}");
            var shape = new HttpBenchShape(config, adapterCount, BenchData.Positive(parse.GetValue(rank), "--rank"),
                BenchData.Positive(parse.GetValue(clients), "--clients"), BenchData.Positive(parse.GetValue(requests), "--requests"),
                BenchData.Positive(parse.GetValue(prompt), "--prompt-tokens"), BenchData.Positive(parse.GetValue(maxTokens), "--max-tokens"),
                BenchData.Positive(parse.GetValue(slots), "--slots"), queue, every);
            string? jsonPath = parse.GetValue(json);
            if (jsonPath is not null) OutputPath.CheckWritable(jsonPath, "--json");
            using var backend = BenchOptions.CreateBackend(parse.GetValue(device));
            var r = HttpBench.Run(backend, shape, line => terminal.Error.MarkupLine($"[grey]{Markup.Escape(line)}[/]"));
            string F(double x) => x.ToString("0.0", CultureInfo.InvariantCulture);
            var table = new Table().Title($"lora serve over loopback, {backend.Name}: L {config.Layers}, C {config.Channels}, V {v}, T {config.BlockSize}; " +
                $"{shape.Clients} clients × {shape.Requests} streamed requests × {shape.MaxTokens} tokens, {shape.Adapters} adapters + base")
                .AddColumn("measure").AddColumn(new TableColumn("value").RightAligned());
            foreach (var (name, value) in new[]
            {
                ("streams completed / left mid-way", $"{r.Completed} / {r.Disconnected}"), ("429 (retried) / errors", $"{r.Rejected} / {r.Errors}"),
                ("streams differing from the whole answer", $"{r.Mismatches}"), ("tokens streamed / s", F(r.TokensPerSecond)),
                ("time to first token p50 / p99, ms", $"{F(r.TtftP50Ms)} / {F(r.TtftP99Ms)}"), ("inter-token p50 / p99, ms", $"{F(r.ItlP50Ms)} / {F(r.ItlP99Ms)}"),
                ("RSS after warm-up → end, MiB", $"{r.RssWarmBytes >> 20} → {r.RssEndBytes >> 20}"), ("requests in a slot after", $"{r.ActiveAfter}"),
            })
                table.AddRow(name, value);
            terminal.Out.Write(table);
            if (jsonPath is not null)
                AtomicFile.WriteAllBytes(jsonPath, JsonSerializer.SerializeToUtf8Bytes(new[] { r }, BenchJsonContext.Default.HttpBenchRecordArray));
            return r.Errors == 0 && r.Mismatches == 0 && r.ActiveAfter == 0 ? ExitCodes.Success : ExitCodes.Failure;
        }));
        return command;
    }
}

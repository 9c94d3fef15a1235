using System.CommandLine;
using System.Globalization;
using LoraRuntime.Cli.Bench;
using Spectre.Console;

namespace LoraRuntime.Cli.Commands;

/// <summary><c>lora bench latency</c>: p50/p99/p999 of an embedded single-request forward and decode step, with the collections counted.</summary>
internal static class BenchLatencyCommand
{
    /// <summary>Untimed calls before each case: past the JIT's tiering thresholds.</summary>
    public const int DefaultWarmup = 40;

    /// <summary>The command.</summary>
    public static Command Create(Terminal terminal)
    {
        var models = new Option<string>("--models")
        {
            Description = $"comma-separated models with random weights: {LatencyModel.Presets}, or LxNHxCxVxT", DefaultValueFactory = _ => "demo,gpt2-small",
            HelpName = "M,...",
        };
        var prompt = new Option<int>("--prompt-tokens") { Description = "the prompt of a timed forward", DefaultValueFactory = _ => 32 };
        var context = new Option<int>("--context") { Description = "tokens cached before a timed decode step", DefaultValueFactory = _ => 128 };
        var gpt2Context = new Option<int>("--gpt2-context") { Description = "the context (block size) of gpt2-small and the Llama-family presets", DefaultValueFactory = _ => 1024 };
        var warmupSeconds = new Option<double>("--warmup-seconds")
        {
            Description = "warm each case up for at least this long too (the JIT re-compiles hot methods a while after their first calls)",
            DefaultValueFactory = _ => 1.0,
        };
        var sequences = new Option<int>("--sequences") { Description = "also time one decode step of this many sequences at once (1: not)", DefaultValueFactory = _ => 1 };
        var rank = new Option<int>("--rank") { Description = "R of the adapter", DefaultValueFactory = _ => 16 };
        var targets = new Option<string>("--targets") { Description = "the projections adapted (PEFT target_modules)", DefaultValueFactory = _ => "q,k,v,o" };
        var quantize = new Option<string>("--quantize")
        {
            Description = "the base's weights as f32, f16, bf16, q8_0, q4_0 or nf4 (the model's name gets \":FORMAT\")", DefaultValueFactory = _ => "f32",
            HelpName = "FORMAT",
        };
        var common = new BenchOptions();
        common.Warmup.DefaultValueFactory = _ => DefaultWarmup;
        var command = new Command("latency",
            "Time an embedded single-request forward and decode step (p50/p99/p999), base and with an adapter, counting garbage collections")
        {
            models, prompt, context, gpt2Context, rank, targets, warmupSeconds, quantize, sequences,
        };
        common.AddTo(command);
        command.SetAction(parse => CliAction.Run(terminal, () =>
        {
            int gpt2 = BenchData.Positive(parse.GetValue(gpt2Context), "--gpt2-context");
            var list = (parse.GetValue(models) ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                .Select(m => LatencyModel.Parse(m, gpt2)).ToList();
            if (list.Count == 0) throw new UsageException("--models: expected at least one model");
            var storage = QuantizeOption.Read(parse.GetValue(quantize), backend: null);
            if (storage.Format is { } format && format != WeightFormat.F32)
                list = list.Select(m => m with { Name = $"{m.Name}:{format.Name()}" }).ToList();
            var names = (parse.GetValue(targets) ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            var shape = new LatencyBenchShape(BenchData.Positive(parse.GetValue(prompt), "--prompt-tokens"), BenchData.Positive(parse.GetValue(context), "--context"),
                BenchData.Positive(parse.GetValue(rank), "--rank"), names, BenchData.Positive(parse.GetValue(sequences), "--sequences"));
            double seconds = parse.GetValue(warmupSeconds);
            if (!(seconds >= 0) || !double.IsFinite(seconds)) throw new UsageException($"--warmup-seconds: expected a finite value ≥ 0; got {seconds}");
            return Execute(terminal, list, shape, common.Read(parse), seconds, storage);
        }));
        return command;
    }

    private static int Execute(Terminal terminal, IReadOnlyList<LatencyModel> models, LatencyBenchShape shape, BenchSettings settings, double warmupSeconds,
        Layers.WeightStorage storage)
    {
        using var backend = BenchOptions.CreateBackend(settings.Device);
        var records = new List<LatencyRecord>();
        foreach (var model in models)
        {
            var c = model.Config;
            string line = $"{model.Name}: L = {c.Layers}, NH = {c.Heads}, C = {c.Channels}, V = {c.Vocabulary}, T = {c.BlockSize} on {backend.Name}; " +
                $"warm-up {settings.Warmup} calls and {warmupSeconds} s, reps {settings.Reps?.ToString(CultureInfo.InvariantCulture) ?? "auto"}";
            terminal.Error.MarkupLine($"[grey]{Markup.Escape(line)}[/]");
            try
            {
                records.AddRange(LatencyBench.Run(backend, model, shape, settings.Warmup, warmupSeconds, settings.Reps, storage));
            }
            catch (ArgumentException e)
            {
                throw new UsageException(e.Message);
            }
        }
        string load = LoadAverage();
        foreach (var model in models)
        {
            var c = model.Config;
            string title = $"{model.Name} (L {c.Layers}, NH {c.Heads}, KVH {c.KvHeads}, C {c.Channels}, V {c.Vocabulary}, T {c.BlockSize}) on {backend.Name}, ms: forward over " +
                $"{Math.Min(shape.PromptTokens, c.BlockSize)} tokens, decode step after {Math.Min(shape.Context, c.BlockSize - 1)} cached; lora R = {shape.Rank} " +
                $"on {string.Join(",", shape.Targets)}; load average {load}";
            terminal.Out.Write(BenchReport.Table(title, records.Where(r => r.Model == model.Name)));
        }
        int collections = records.Sum(r => r.Gen0Collections + r.Gen1Collections + r.Gen2Collections);
        long allocated = records.Sum(r => r.AllocatedBytes);
        terminal.Out.MarkupLine(Markup.Escape($"garbage collections during the timed calls: {collections}; bytes allocated by them: {allocated}"));
        foreach (var r in records.Where(r => r.Op == "decode"))
            terminal.Out.MarkupLine(Markup.Escape($"{r.Model} decode ({r.Adapter}): p50 {r.P50Ms:0.000} ms, p99 {r.P99Ms:0.000} ms = {r.P99OverP50:0.00} × p50"));
        foreach (var r in records.Where(r => r.Op == "decode_batch"))
            terminal.Out.MarkupLine(Markup.Escape($"{r.Model} decode step of {r.Tokens} sequences: p50 {r.P50Ms:0.000} ms, {r.TokensPerSecond:0} tokens/s"));
        foreach (var model in records.GroupBy(r => r.Model))
            terminal.Out.MarkupLine(Markup.Escape(
                $"{model.Key} peak memory: pool {model.Max(r => r.PoolPeakBytes) / 1048576.0:0} MiB, process {model.Max(r => r.ProcessPeakBytes) / 1048576.0:0} MiB"));
        if (settings.JsonPath is not null)
        {
            BenchReport.WriteJson(settings.JsonPath, records);
            terminal.Error.MarkupLine($"[grey]wrote {Markup.Escape(Path.GetFullPath(settings.JsonPath))}[/]");
        }
        return ExitCodes.Success;
    }

    /// <summary>The 1-, 5- and 15-minute load averages from /proc/loadavg, or "unknown" where there is none.</summary>
    private static string LoadAverage()
    {
        try
        {
            var parts = File.ReadAllText("/proc/loadavg").Split(' ');
            return string.Join(" ", parts.Take(3));
        }
        catch (IOException)
        {
            return "unknown";
        }
        catch (UnauthorizedAccessException)
        {
            return "unknown";
        }
    }
}

using System.CommandLine;
using LoraRuntime.Cli.Bench;
using LoraRuntime.Layers;
using Spectre.Console;

namespace LoraRuntime.Cli.Commands;

/// <summary><c>lora bench serve</c>: decode throughput of a batch with many adapters, against one merged adapter and a loop over adapters.</summary>
internal static class BenchServeCommand
{
    /// <summary>The command.</summary>
    public static Command Create(Terminal terminal)
    {
        var batch = new Option<int>("--batch") { Description = "requests decoded together", DefaultValueFactory = _ => 32 };
        var distinct = new Option<string>("--adapters") { Description = "comma-separated numbers of distinct adapters in the batch", DefaultValueFactory = _ => "1,4,16,32", HelpName = "D,..." };
        var channels = new Option<int>("--channels") { Description = "C", DefaultValueFactory = _ => 768 };
        var layers = new Option<int>("--layers") { Description = "L", DefaultValueFactory = _ => 4 };
        var heads = new Option<int>("--heads") { Description = "NH", DefaultValueFactory = _ => 12 };
        var vocabulary = new Option<int>("--vocab") { Description = "V", DefaultValueFactory = _ => 512 };
        var context = new Option<int>("--context") { Description = "tokens in each request's KV cache before the timed step", DefaultValueFactory = _ => 64 };
        var rank = new Option<int>("--rank") { Description = "R of every adapter", DefaultValueFactory = _ => 16 };
        var targets = new Option<string>("--targets") { Description = "the projections adapted (PEFT target_modules)", DefaultValueFactory = _ => "q,k,v,o" };
        var common = new BenchOptions();
        var command = new Command("serve",
            "Time a decode step of a batch of requests: d distinct adapters per batch (segmented LoRA GEMMs), one merged adapter, and a loop over adapters")
        {
            batch, distinct, channels, layers, heads, vocabulary, context, rank, targets,
        };
        common.AddTo(command);
        command.SetAction(parse => CliAction.Run(terminal, () =>
        {
            int c = BenchData.Positive(parse.GetValue(channels), "--channels"), nh = BenchData.Positive(parse.GetValue(heads), "--heads");
            if (c % nh != 0) throw new UsageException($"--heads: NH must divide C = {c}; got {nh}");
            int ctx = BenchData.Positive(parse.GetValue(context), "--context");
            var config = new GptConfig(BenchData.Positive(parse.GetValue(vocabulary), "--vocab"), BenchData.Positive(parse.GetValue(layers), "--layers"), nh, c, ctx + 1);
            int b = BenchData.Positive(parse.GetValue(batch), "--batch");
            var counts = BenchData.ParseSizes(parse.GetValue(distinct), "--adapters");
            if (counts.Any(d => d > b)) throw new UsageException($"--adapters: at most --batch = {b} distinct adapters fit a batch");
            var names = (parse.GetValue(targets) ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            var shape = new ServeBenchShape(config, b, BenchData.Positive(parse.GetValue(rank), "--rank"), ctx, counts, names);
            return Execute(terminal, shape, common.Read(parse));
        }));
        return command;
    }

    private static int Execute(Terminal terminal, ServeBenchShape shape, BenchSettings settings)
    {
        using var backend = BenchOptions.CreateBackend(settings.Device);
        var cfg = shape.Config;
        string title = $"decode step, batch {shape.Batch}, context {shape.Context}: GPT L = {cfg.Layers}, C = {cfg.Channels}, NH = {cfg.Heads}, V = {cfg.Vocabulary}; " +
            $"adapters R = {shape.Rank} on {string.Join(",", shape.Targets)} on {backend.Name}; shape = batch x distinct x R x context; ratio = median / 1-adapter batch";
        terminal.Error.MarkupLine($"[grey]{Markup.Escape(title)}: warm-up {settings.Warmup}, reps {settings.Reps?.ToString() ?? "auto"}[/]");
        IReadOnlyList<BenchRecord> records;
        try
        {
            records = ServeBench.Run(backend, shape, settings.Warmup, settings.Reps);
        }
        catch (ArgumentException e)
        {
            throw new UsageException(e.Message);
        }
        foreach (var r in records)
            terminal.Error.MarkupLine($"[grey]  {r.Op} ({r.Shape[1]} adapters): {r.MedianMs:0.000} ms per step, {shape.Batch / (r.MedianMs * 1e-3):0} tokens/s[/]");
        int code = BenchGemmCommand.Report(terminal, title, records, settings);
        var one = records.First(r => r.Op == "decode_mixed" && r.Shape[1] == shape.Distinct.Min());
        var most = records.Last(r => r.Op == "decode_mixed");
        var loop = records.First(r => r.Op == "decode_loop");
        double TokensPerSecond(BenchRecord r) => shape.Batch / (r.MedianMs * 1e-3);
        terminal.Out.MarkupLine(Markup.Escape(
            $"{most.Shape[1]} distinct adapters: {TokensPerSecond(most):0} tokens/s ({most.MedianMs:0.0} ms per step) = {one.MedianMs / most.MedianMs:0.00}× the throughput with {one.Shape[1]} " +
            $"({TokensPerSecond(one):0} tokens/s) and {loop.MedianMs / most.MedianMs:0.00}× the loop over adapters ({TokensPerSecond(loop):0} tokens/s)"));
        return code;
    }
}

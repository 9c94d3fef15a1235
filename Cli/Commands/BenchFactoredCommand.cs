using System.CommandLine;
using LoraRuntime.Cli.Bench;
using Spectre.Console;

namespace LoraRuntime.Cli.Commands;

/// <summary><c>lora bench factored</c>: a dense linear layer against its rank-K factorization (a compressed layer).</summary>
internal static class BenchFactoredCommand
{
    /// <summary>The command.</summary>
    public static Command Create(Terminal terminal)
    {
        var times = new Option<string>("--t") { Description = "comma-separated sequence lengths T (batch 1)", DefaultValueFactory = _ => "1,64,512", HelpName = "T,..." };
        var inFeatures = new Option<int>("--in") { Description = "C, the layer's input width", DefaultValueFactory = _ => 768 };
        var outFeatures = new Option<int>("--out") { Description = "OC, the layer's output width", DefaultValueFactory = _ => 3072 };
        var rank = new Option<int>("--rank") { Description = "K, the factorization's rank", DefaultValueFactory = _ => 128 };
        var common = new BenchOptions();
        var command = new Command("factored", "Time a dense Linear x·Wᵀ + b against its factorization (x·Vᵀ)·Uᵀ + b at rank K, forward and backward")
        {
            times, inFeatures, outFeatures, rank,
        };
        common.AddTo(command);
        command.SetAction(parse => CliAction.Run(terminal, () =>
        {
            var sizes = BenchData.ParseSizes(parse.GetValue(times), "--t");
            int c = BenchData.Positive(parse.GetValue(inFeatures), "--in"), oc = BenchData.Positive(parse.GetValue(outFeatures), "--out");
            int k = BenchData.Positive(parse.GetValue(rank), "--rank");
            if (k > Math.Min(c, oc)) throw new UsageException($"--rank: K must be at most min(OC, C) = {Math.Min(c, oc)}; got {k}");
            var settings = common.Read(parse);
            using var backend = BenchOptions.CreateBackend(settings.Device);
            string title = $"factored Linear OC = {oc}, C = {c}, K = {k} on {backend.Name} (kernel {GemmBench.KernelName(backend)}); ratio = median / dense forward";
            terminal.Error.MarkupLine($"[grey]{Markup.Escape(title)}: warm-up {settings.Warmup}, reps {settings.Reps?.ToString() ?? "auto"}[/]");
            var records = new List<BenchRecord>();
            foreach (int time in sizes)
                foreach (var record in FactoredBench.Run(backend, time, c, oc, k, settings.Warmup, settings.Reps))
                {
                    records.Add(record);
                    terminal.Error.MarkupLine($"[grey]  T = {time} {record.Op}: {record.MedianMs:0.000} ms ({record.Ratio:0.000}× dense)[/]");
                }
            return BenchGemmCommand.Report(terminal, title, records, settings);
        }));
        return command;
    }
}

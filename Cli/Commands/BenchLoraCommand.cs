using System.CommandLine;
using LoraRuntime.Cli.Bench;
using Spectre.Console;

namespace LoraRuntime.Cli.Commands;

/// <summary><c>lora bench lora</c>: a LoRA linear layer against its base alone, merged, and its backward pass.</summary>
internal static class BenchLoraCommand
{
    /// <summary>The command.</summary>
    public static Command Create(Terminal terminal)
    {
        var times = new Option<string>("--t") { Description = "comma-separated sequence lengths T (batch 1)", DefaultValueFactory = _ => "1,64,512", HelpName = "T,..." };
        var channels = new Option<int>("--channels") { Description = "C: the layer is [C, C]", DefaultValueFactory = _ => 4096 };
        var rank = new Option<int>("--rank") { Description = "R, the adapter's rank", DefaultValueFactory = _ => 16 };
        var common = new BenchOptions();
        var command = new Command("lora",
            "Time y = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ: the base Linear alone, the unmerged adapter, the merged one, and the adapter's backward")
        {
            times, channels, rank,
        };
        common.AddTo(command);
        command.SetAction(parse => CliAction.Run(terminal, () => Execute(
            terminal,
            BenchData.ParseSizes(parse.GetValue(times), "--t"),
            BenchData.Positive(parse.GetValue(channels), "--channels"),
            BenchData.Positive(parse.GetValue(rank), "--rank"),
            common.Read(parse))));
        return command;
    }

    private static int Execute(Terminal terminal, IReadOnlyList<int> times, int channels, int rank, BenchSettings settings)
    {
        if (rank > channels) throw new UsageException($"--rank: R must be at most C = {channels}; got {rank}");
        using var backend = BenchOptions.CreateBackend(settings.Device);
        string title = $"LoRA linear C = {channels}, R = {rank} on {backend.Name} (kernel {GemmBench.KernelName(backend)}); ratio = median / base Linear";
        terminal.Error.MarkupLine($"[grey]{Markup.Escape(title)}: warm-up {settings.Warmup}, reps {settings.Reps?.ToString() ?? "auto"}[/]");
        var records = new List<BenchRecord>();
        foreach (int time in times)
            foreach (var record in LoraBench.Run(backend, time, channels, rank, settings.Warmup, settings.Reps))
            {
                records.Add(record);
                terminal.Error.MarkupLine($"[grey]  T = {time} {record.Op}: {record.MedianMs:0.000} ms ({record.Ratio:0.000}× base)[/]");
            }
        return BenchGemmCommand.Report(terminal, title, records, settings);
    }
}

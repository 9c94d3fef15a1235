using System.CommandLine;
using LoraRuntime.Cli.Bench;
using Spectre.Console;

namespace LoraRuntime.Cli.Commands;

/// <summary><c>lora bench attention</c>: full causal attention against low-rank (Linformer) attention over T.</summary>
internal static class BenchAttentionCommand
{
    /// <summary>The command.</summary>
    public static Command Create(Terminal terminal)
    {
        var times = new Option<string>("--t") { Description = "comma-separated sequence lengths T (batch 1)", DefaultValueFactory = _ => "256,512,1024,2048,4096", HelpName = "T,..." };
        var channels = new Option<int>("--channels") { Description = "C, the model width", DefaultValueFactory = _ => 256 };
        var heads = new Option<int>("--heads") { Description = "NH, the number of heads (C must be a multiple)", DefaultValueFactory = _ => 4 };
        var projected = new Option<int>("--k") { Description = "K, the length keys and values are projected to", DefaultValueFactory = _ => 128 };
        var backward = new Option<bool>("--backward") { Description = "time forward + backward (activations reserved for training)" };
        var common = new BenchOptions();
        var command = new Command("attention", "Time full causal self-attention against low-rank (Linformer) attention, with the memory each reserves")
        {
            times, channels, heads, projected, backward,
        };
        common.AddTo(command);
        command.SetAction(parse => CliAction.Run(terminal, () => Execute(
            terminal,
            BenchData.ParseSizes(parse.GetValue(times), "--t"),
            BenchData.Positive(parse.GetValue(channels), "--channels"),
            BenchData.Positive(parse.GetValue(heads), "--heads"),
            BenchData.Positive(parse.GetValue(projected), "--k"),
            parse.GetValue(backward),
            common.Read(parse))));
        return command;
    }

    private static int Execute(Terminal terminal, IReadOnlyList<int> times, int channels, int heads, int projected, bool backward, BenchSettings settings)
    {
        if (channels % heads != 0) throw new UsageException($"--heads: C = {channels} must be a multiple of NH; got NH = {heads}");
        using var backend = BenchOptions.CreateBackend(settings.Device);
        string title = $"attention C = {channels}, NH = {heads}, K = {projected} on {backend.Name}, {(backward ? "forward + backward" : "forward")}; ratio = median / full";
        terminal.Error.MarkupLine($"[grey]{Markup.Escape(title)}: warm-up {settings.Warmup}, reps {settings.Reps?.ToString() ?? "auto"}[/]");
        var records = new List<BenchRecord>();
        foreach (int time in times)
            foreach (var record in AttentionBench.Run(backend, time, channels, heads, projected, backward, settings.Warmup, settings.Reps))
            {
                records.Add(record);
                terminal.Error.MarkupLine(
                    $"[grey]  T = {time} {record.Op}: {record.MedianMs:0.000} ms, {record.ReservedBytes / 1048576.0:0.0} MiB reserved[/]");
            }
        return BenchGemmCommand.Report(terminal, title, records, settings);
    }
}

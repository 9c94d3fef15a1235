using System.CommandLine;
using LoraRuntime.Cli.Bench;
using Spectre.Console;

namespace LoraRuntime.Cli.Commands;

/// <summary><c>lora bench svd</c>: the full thin SVD over a list of sizes, then one truncated SVD.</summary>
internal static class BenchSvdCommand
{
    /// <summary>The command.</summary>
    public static Command Create(Terminal terminal)
    {
        var sizes = new Option<string>("--sizes")
        {
            Description = "comma-separated n: the full thin SVD of a Gaussian n×n matrix for each",
            DefaultValueFactory = _ => SvdBench.DefaultSizes,
            HelpName = "N,...",
        };
        var truncated = new Option<string>("--truncated")
        {
            Description = "MxNxK: the rank-K truncated SVD of an M×N matrix with singular values 0.8^i, or 'none'",
            DefaultValueFactory = _ => SvdBench.DefaultTruncated,
            HelpName = "MxNxK|none",
        };
        var common = new BenchOptions();
        var command = new Command("svd", "Time the full and the truncated SVD in float32, with their reconstruction errors") { sizes, truncated };
        common.AddTo(command);
        command.SetAction(parse => CliAction.Run(terminal, () =>
        {
            string? t = parse.GetValue(truncated)?.Trim();
            GemmShape? shape = string.Equals(t, "none", StringComparison.OrdinalIgnoreCase) ? null : GemmShape.Parse(t ?? "", "--truncated");
            return Execute(terminal, SvdBench.ParseSizes(parse.GetValue(sizes), "--sizes"), shape, common.Read(parse));
        }));
        return command;
    }

    private static int Execute(Terminal terminal, IReadOnlyList<int> sizes, GemmShape? truncated, BenchSettings settings)
    {
        using var backend = BenchOptions.CreateBackend(settings.Device);
        string title = $"svd on {backend.Name} (GEMM kernel {GemmBench.KernelName(backend)})";
        terminal.Error.MarkupLine($"[grey]{Markup.Escape(title)}: warm-up {settings.Warmup}, reps {settings.Reps?.ToString() ?? "auto"}[/]");
        var records = new List<SvdBenchRecord>();
        foreach (int n in sizes)
        {
            var record = SvdBench.Full(backend, n, settings.Warmup, settings.Reps);
            records.Add(record);
            terminal.Error.MarkupLine($"[grey]  svd {n}x{n}: {record.MedianMs:0.000} ms, rel err {record.RelErr:0.0e+0}[/]");
        }
        if (truncated is { } shape)
        {
            var record = SvdBench.Truncated(backend, shape.M, shape.N, shape.K, settings.Warmup, settings.Reps);
            records.Add(record);
            terminal.Error.MarkupLine(
                $"[grey]  truncated {shape}: {record.MedianMs:0.000} ms, rel err {record.RelErr:0.00000} (best {record.BestRelErr:0.00000})[/]");
        }
        terminal.Out.Write(BenchReport.Table(title, records));
        if (settings.JsonPath is not null)
        {
            BenchReport.WriteJson(settings.JsonPath, records);
            terminal.Error.MarkupLine($"[grey]wrote {Markup.Escape(Path.GetFullPath(settings.JsonPath))}[/]");
        }
        return ExitCodes.Success;
    }
}

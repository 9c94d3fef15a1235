using System.CommandLine;

namespace LoraRuntime.Cli.Commands;

/// <summary><c>lora bench</c>: the parent of the benchmark commands.</summary>
internal static class BenchCommand
{
    /// <summary>The command with its subcommands.</summary>
    public static Command Create(Terminal terminal) =>
        new("bench", "Benchmark operations: median time, GFLOP/s and error against a float64 reference")
        {
            BenchGemmCommand.Create(terminal),
            BenchLoraCommand.Create(terminal),
            BenchFactoredCommand.Create(terminal),
            BenchAttentionCommand.Create(terminal),
            BenchSvdCommand.Create(terminal),
            BenchServeCommand.Create(terminal),
            BenchLatencyCommand.Create(terminal),
            BenchFinetuneCommand.Create(terminal),
            BenchHttpCommand.Create(terminal),
        };
}

using System.CommandLine;
using LoraRuntime.Cli.Commands;

namespace LoraRuntime.Cli;

/// <summary>The <c>lora</c> command line: the root command and its exit-code rules.</summary>
internal static class LoraApp
{
    /// <summary>The root command with every subcommand.</summary>
    public static RootCommand BuildRootCommand(Terminal terminal)
    {
        var root = new RootCommand("lora: train, merge, compress, serve and benchmark low-rank adapters (LoraRuntime)");
        root.Add(InfoCommand.Create(terminal));
        root.Add(BenchCommand.Create(terminal));
        root.Add(InspectCommand.Create(terminal));
        root.Add(QuantizeCommand.Create(terminal));
        root.Add(TrainCommand.Create(terminal));
        root.Add(FinetuneCommand.Create(terminal));
        root.Add(GenerateCommand.Create(terminal));
        root.Add(DemoCommand.Create(terminal));
        root.Add(MergeCommand.Create(terminal));
        root.Add(CompressCommand.Create(terminal));
        root.Add(ExtractCommand.Create(terminal));
        root.Add(CombineCommand.Create(terminal));
        root.Add(ServeCommand.Create(terminal));
        return root;
    }

    /// <summary>
    /// Parses and runs <paramref name="args"/>; returns the exit code: <see cref="ExitCodes.Success"/>,
    /// <see cref="ExitCodes.Failure"/>, or <see cref="ExitCodes.Usage"/> for any parse error or bad option value.
    /// </summary>
    public static int Run(string[] args, Terminal terminal)
    {
        var parse = BuildRootCommand(terminal).Parse(args);
        int exitCode = parse.Invoke(new InvocationConfiguration { Output = terminal.OutWriter, Error = terminal.ErrorWriter });
        return parse.Errors.Count > 0 ? ExitCodes.Usage : exitCode;
    }
}

using System.CommandLine;
using LoraRuntime.Cli.Bench;
using LoraRuntime.Layers.Adapters;
using Spectre.Console;

namespace LoraRuntime.Cli.Commands;

/// <summary><c>lora combine</c>: one adapter from several, with PEFT's <c>add_weighted_adapter</c> semantics (see <see cref="AdapterCombination"/>).</summary>
internal static class CombineCommand
{
    /// <summary>The command.</summary>
    public static Command Create(Terminal terminal)
    {
        var adapters = new Option<string[]>("--adapter")
        {
            Description = "a PEFT adapter directory with an optional weight, DIR[:weight]; repeat for each adapter", HelpName = "DIR[:weight]", Required = true,
        };
        var method = new Option<string>("--method") { Description = "linear, cat or svd (PEFT's combination_type)", DefaultValueFactory = _ => "svd" };
        var rank = new Option<int?>("--rank") { Description = "the svd method's rank (default: the largest input rank)", HelpName = "R" };
        var output = new Option<string>("--out") { Description = "the combined adapter directory to write", Required = true };
        var device = new Option<string?>("--device") { Description = "cpu, cuda or auto (default: $LORA_DEVICE, else auto)" };
        var command = new Command("combine", "Combine LoRA adapters into one (PEFT's add_weighted_adapter: linear, cat or svd)") { adapters, method, rank, output, device };
        command.SetAction(parse => CliAction.Run(terminal, () =>
        {
            var how = (parse.GetValue(method) ?? "") switch
            {
                "linear" => CombinationMethod.Linear,
                "cat" => CombinationMethod.Cat,
                "svd" => CombinationMethod.Svd,
                var other => throw new UsageException($"--method: expected linear, cat or svd; got '{other}'"),
            };
            string outDir = parse.GetValue(output)!;
            LowRankArgs.CheckOutputDirectory(outDir, "--out",
                [.. (parse.GetValue(adapters) ?? []).Select(spec => ((string?)GenerateCommand.ParseAdapter(spec).Dir, "--adapter"))]);
            var inputs = new List<(AdapterTensors, float)>();
            foreach (string spec in parse.GetValue(adapters) ?? [])
            {
                var (dir, weight) = GenerateCommand.ParseAdapter(spec);
                if (!Directory.Exists(dir)) throw new UsageException($"--adapter: no directory '{dir}'");
                try
                {
                    inputs.Add((PeftAdapterTensors.Read(dir), weight));
                }
                catch (FileNotFoundException e)
                {
                    throw new UsageException($"--adapter: {e.Message}");
                }
            }
            using var backend = BenchOptions.CreateBackend(parse.GetValue(device));
            AdapterTensors combined;
            try
            {
                combined = AdapterCombination.Combine(backend, inputs, how, parse.GetValue(rank));
            }
            catch (ArgumentException e)
            {
                string option = e.ParamName switch { "method" => "--method", "svdRank" => "--rank", _ => "--adapter" };
                throw new UsageException($"{option}: {e.Message}");
            }
            PeftAdapterTensors.Write(combined, outDir);
            terminal.Out.MarkupLine(
                $"combined {inputs.Count} adapters ({how.ToString().ToLowerInvariant()}): r = {combined.Config.Defaults.Rank}, lora_alpha = {combined.Config.Defaults.Alpha}, {combined.Modules.Count} modules");
            terminal.Out.MarkupLine($"wrote [blue]{Markup.Escape(Path.GetFullPath(outDir))}[/] ({PeftAdapterFiles.ConfigFile}, {PeftAdapterFiles.WeightsFile})");
            return ExitCodes.Success;
        }));
        return command;
    }
}

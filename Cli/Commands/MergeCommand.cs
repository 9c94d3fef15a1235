using System.CommandLine;
using LoraRuntime.Cli.Bench;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using Spectre.Console;

namespace LoraRuntime.Cli.Commands;

/// <summary>
/// <c>lora merge</c>: folds a PEFT adapter (at a scale) into a base model's weights, W += scale·s·B·A (DoRA as PEFT
/// merges it), and writes an ordinary model directory.
/// </summary>
internal static class MergeCommand
{
    /// <summary>The command.</summary>
    public static Command Create(Terminal terminal)
    {
        var baseDir = new Option<string>("--base") { Description = "a model directory: ours, a Hugging Face GPT-2 or Llama-family checkpoint (the merged one is written in the same layout)", Required = true };
        var adapterArg = new Option<string>("--adapter") { Description = "a PEFT adapter directory, optionally with a scale: DIR[:scale]", HelpName = "DIR[:scale]", Required = true };
        var output = new Option<string>("--out") { Description = "the merged model directory to write", Required = true };
        var device = new Option<string?>("--device") { Description = "cpu, cuda or auto (default: $LORA_DEVICE, else auto)" };
        var command = new Command("merge", "Merge a LoRA adapter into a model's weights and save the merged model") { baseDir, adapterArg, output, device };
        command.SetAction(parse => CliAction.Run(terminal, () =>
        {
            var (dir, scale) = GenerateCommand.ParseAdapter(parse.GetValue(adapterArg)!);
            string outDir = parse.GetValue(output)!, source = parse.GetValue(baseDir)!;
            LowRankArgs.CheckOutputDirectory(outDir, "--out", (source, "--base"), (dir, "--adapter"));
            using var backend = BenchOptions.CreateBackend(parse.GetValue(device));
            var (model, tokenizer, layout) = LowRankArgs.LoadAnyModel(backend, source, "--base", maxBatch: 1);
            OutputPath.CheckFreeSpace(outDir, model.Parameters.Count * sizeof(float), "--out");
            using (model)
            using (var lora = new LoraModel(model))
            {
                var adapter = LowRankArgs.LoadAdapter(lora, dir, "--adapter", layout: layout);
                if (scale != 1f)
                    foreach (var w in adapter.Modules) backend.Scale(w.B.Value, w.B.Value, scale);
                try
                {
                    lora.Merge(safe: true);
                }
                catch (InvalidOperationException e)
                {
                    throw new UsageException($"--adapter: {e.Message}");
                }
                // Saved while merged, in the base's layout: disposing the LoRA model afterwards unmerges the in-memory weights only.
                ModelDirectory.SaveLike(model, tokenizer, layout, source, outDir);
                terminal.Out.MarkupLine(
                    $"merged [blue]{Markup.Escape(dir)}[/] (scale {scale}, {adapter.Modules.Count} modules) into [blue]{Markup.Escape(parse.GetValue(baseDir)!)}[/]");
            }
            terminal.Out.MarkupLine($"wrote [blue]{Markup.Escape(Path.GetFullPath(outDir))}[/] ({GptFiles.ModelFile}, {GptFiles.ConfigFile})");
            return ExitCodes.Success;
        }));
        return command;
    }
}

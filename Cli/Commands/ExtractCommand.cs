using System.CommandLine;
using System.Text.Json;
using LoraRuntime.Cli.Bench;
using LoraRuntime.Cli.LowRank;
using LoraRuntime.IO;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Layers.Compression;
using Spectre.Console;

namespace LoraRuntime.Cli.Commands;

/// <summary><c>lora extract</c>: a PEFT adapter of rank R from the difference between a fine-tuned model and its base.</summary>
internal static class ExtractCommand
{
    /// <summary>The command.</summary>
    public static Command Create(Terminal terminal)
    {
        var baseDir = new Option<string>("--base") { Description = "the base model directory", Required = true };
        var tunedDir = new Option<string>("--tuned") { Description = "the fine-tuned model directory (same architecture)", Required = true };
        var rank = new Option<int>("--rank") { Description = "the adapter's rank R", Required = true };
        var targets = new Option<string>("--targets") { Description = "comma-separated targets: q, k, v, qkv, o, fc, proj, or all-linear", DefaultValueFactory = _ => LoraConfig.AllLinear };
        var output = new Option<string>("--out") { Description = "the adapter directory to write (PEFT layout)", Required = true };
        var json = new Option<string?>("--json") { Description = "write the report to FILE", HelpName = "FILE" };
        var device = new Option<string?>("--device") { Description = "cpu, cuda or auto (default: $LORA_DEVICE, else auto)" };
        var command = new Command("extract", "Extract a LoRA adapter from a fine-tuned model and its base (truncated SVD of the difference)")
        {
            baseDir, tunedDir, rank, targets, output, json, device,
        };
        command.SetAction(parse => CliAction.Run(terminal, () =>
        {
            int r = parse.GetValue(rank);
            if (r < 1) throw new UsageException($"--rank: expected R ≥ 1; got {r}");
            string outDir = parse.GetValue(output)!, baseModel = parse.GetValue(baseDir)!, tunedModel = parse.GetValue(tunedDir)!;
            LowRankArgs.CheckOutputDirectory(outDir, "--out", (baseModel, "--base"), (tunedModel, "--tuned"));
            string? jsonPath = parse.GetValue(json);
            if (jsonPath is not null) OutputPath.CheckWritable(jsonPath, "--json");
            using var backend = BenchOptions.CreateBackend(parse.GetValue(device));
            var (b, _, layout) = LowRankArgs.LoadAnyModel(backend, baseModel, "--base", maxBatch: 1);
            using (b)
            {
                var (tuned, _, _) = LowRankArgs.LoadAnyModel(backend, tunedModel, "--tuned", maxBatch: 1);
                using (tuned)
                using (var lora = new LoraModel(b))
                {
                    (LoraConfig Config, LoraAdapter Adapter, IReadOnlyList<ExtractedModule> Modules) extracted;
                    try
                    {
                        extracted = AdapterExtraction.Extract(lora, b, tuned, "extracted", r, LowRankArgs.Targets(parse.GetValue(targets)));
                    }
                    catch (ArgumentException e)
                    {
                        string option = e.ParamName switch { "tuned" => "--tuned", "rank" => "--rank", _ => "--targets/--rank" };
                        throw new UsageException($"{option}: {e.Message}");
                    }
                    try
                    {
                        // In the base's layout: PEFT's module names for a Hugging Face checkpoint.
                        PeftAdapterFiles.Save(extracted.Adapter, extracted.Config, outDir, Path.GetFullPath(baseModel), layout);
                    }
                    catch (ArgumentException e)
                    {
                        throw new UsageException($"--targets: {e.Message}");
                    }
                    var report = ExtractReport.From(baseModel, tunedModel, outDir, r, extracted.Modules);
                    if (jsonPath is not null)
                        AtomicFile.WriteAllBytes(jsonPath, JsonSerializer.SerializeToUtf8Bytes(report, LowRankJsonContext.Default.ExtractReport));
                    report.Render(terminal.Out);
                    var missed = AdapterExtraction.UncapturedDifferences(b, tuned, extracted.Adapter);
                    if (missed.Count > 0)
                        terminal.Out.MarkupLine(Markup.Escape(
                            $"note: {missed.Count} parameters outside the targeted layers also differ and are not in the adapter: {string.Join(", ", missed.Take(6))}{(missed.Count > 6 ? ", …" : "")}"));
                }
            }
            terminal.Out.MarkupLine($"wrote [blue]{Markup.Escape(Path.GetFullPath(outDir))}[/] ({PeftAdapterFiles.ConfigFile}, {PeftAdapterFiles.WeightsFile})");
            return ExitCodes.Success;
        }));
        return command;
    }
}

using System.CommandLine;
using System.Text.Json;
using LoraRuntime.Cli.Bench;
using LoraRuntime.Cli.LowRank;
using LoraRuntime.Cli.Training;
using LoraRuntime.IO;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Layers.Compression;
using LoraRuntime.Layers.Training;
using Spectre.Console;

namespace LoraRuntime.Cli.Commands;

/// <summary>
/// <c>lora compress</c>: replaces linear layers by two truncated-SVD factors (a fixed rank, or the rank keeping a
/// fraction of the spectral energy), reports each layer, and optionally the validation loss before and after.
/// </summary>
internal static class CompressCommand
{
    /// <summary>The command.</summary>
    public static Command Create(Terminal terminal)
    {
        var modelDir = new Option<string>("--model") { Description = "a model directory: written by lora train, or a Hugging Face GPT-2 or Llama-family checkpoint", Required = true };
        var rank = new Option<int?>("--rank") { Description = "keep K singular triplets of every chosen layer", HelpName = "K" };
        var energy = new Option<double?>("--energy") { Description = "keep the smallest rank holding this fraction of Σσ², in (0, 1]", HelpName = "FRACTION" };
        var targets = new Option<string>("--targets") { Description = "comma-separated layers (qkv, o, fc, proj in GPT models; qkv, o, gate_up, down in Llama-style ones), paths, or all-linear", DefaultValueFactory = _ => LoraConfig.AllLinear };
        var output = new Option<string>("--out") { Description = "the compressed model directory to write", Required = true };
        var data = new Option<string?>("--data") { Description = "a corpus: report the validation loss (its last 10%, as lora train) of both models", HelpName = "FILE" };
        var json = new Option<string?>("--json") { Description = "write the report to FILE", HelpName = "FILE" };
        var batch = new Option<int>("--batch") { Description = "sequences per evaluation batch", DefaultValueFactory = _ => 12 };
        var evalIters = new Option<int>("--eval-iters") { Description = "batches per evaluation", DefaultValueFactory = _ => 20 };
        var keepDense = new Option<bool>("--keep-dense-if-larger") { Description = "leave a layer dense when its two factors would not be smaller than W" };
        var seed = new Option<ulong>("--seed") { Description = "seed of the evaluation windows (lora train's --seed)", DefaultValueFactory = _ => 1337UL };
        var device = new Option<string?>("--device") { Description = "cpu, cuda or auto (default: $LORA_DEVICE, else auto)" };
        var command = new Command("compress", "Factor linear layers into two low-rank matrices by truncated SVD")
        {
            modelDir, rank, energy, targets, output, data, json, keepDense, batch, evalIters, seed, device,
        };
        command.SetAction(parse => CliAction.Run(terminal, () =>
        {
            var choice = Choice(parse.GetValue(rank), parse.GetValue(energy));
            string outDir = parse.GetValue(output)!, source = parse.GetValue(modelDir)!;
            LowRankArgs.CheckOutputDirectory(outDir, "--out", (source, "--model"));
            string? jsonPath = parse.GetValue(json), dataPath = parse.GetValue(data);
            if (jsonPath is not null) OutputPath.CheckWritable(jsonPath, "--json");
            int evalBatch = parse.GetValue(batch), iters = parse.GetValue(evalIters);
            if (evalBatch < 1) throw new UsageException($"--batch: expected ≥ 1; got {evalBatch}");
            if (iters < 1) throw new UsageException($"--eval-iters: expected ≥ 1; got {iters}");
            string? text = dataPath is null ? null : TrainingOptions.ReadCorpus(dataPath, "--data");
            var options = new CompressionOptions(choice, LowRankArgs.Targets(parse.GetValue(targets)), parse.GetValue(keepDense));
            using var backend = BenchOptions.CreateBackend(parse.GetValue(device));
            // Any layout in; ours out (a factored layer has no Hugging Face layout), keeping the tokenizer and the module
            // names the source's PEFT adapters use.
            var (model, tokenizer, names) = LowRankArgs.LoadAnyModel(backend, source, "--model", evalBatch);
            OutputPath.CheckFreeSpace(outDir, model.Parameters.Count * sizeof(float), "--out"); // at most the dense model
            using (model)
            {
                TokenBatches? validation = null;
                if (text is not null)
                {
                    int[] tokens;
                    try
                    {
                        tokens = ModelDirectory.RequireTokenizer(tokenizer, source, names).Encode(text);
                    }
                    catch (Exception e) when (e is ArgumentException or InvalidDataException)
                    {
                        throw new UsageException($"--data: {e.Message}");
                    }
                    validation = TrainingOptions.Split(tokens, model.Config.BlockSize).Validation;
                }
                (GptModel Model, IReadOnlyList<CompressedLayer> Layers) compressed;
                try
                {
                    compressed = ModelCompression.Compress(model, options, evalBatch);
                }
                catch (ArgumentException e)
                {
                    throw new UsageException($"{(e.ParamName == "rank" ? "--rank" : "--targets")}: {e.Message}");
                }
                using (compressed.Model)
                {
                    (float, float, int, int)? losses = null;
                    if (validation is not null)
                    {
                        using var original = new Evaluator(model, evalBatch);
                        using var small = new Evaluator(compressed.Model, evalBatch);
                        ulong s = parse.GetValue(seed);
                        losses = (original.MeanLoss(validation, iters, s), small.MeanLoss(validation, iters, s), iters, evalBatch);
                    }
                    GptFiles.Save(compressed.Model, tokenizer, outDir, names);
                    var report = CompressReport.From(source, outDir, choice, compressed.Layers, model.Parameters.Count, compressed.Model.Parameters.Count, losses);
                    if (jsonPath is not null)
                        AtomicFile.WriteAllBytes(jsonPath, JsonSerializer.SerializeToUtf8Bytes(report, LowRankJsonContext.Default.CompressReport));
                    report.Render(terminal.Out);
                }
            }
            terminal.Out.MarkupLine($"wrote [blue]{Markup.Escape(Path.GetFullPath(outDir))}[/] ({GptFiles.ModelFile}, {GptFiles.ConfigFile})");
            return ExitCodes.Success;
        }));
        return command;
    }

    private static RankChoice Choice(int? rank, double? energy)
    {
        if (rank is null == energy is null) throw new UsageException("--rank/--energy: give exactly one: --rank K or --energy FRACTION");
        if (rank is { } k)
            return k >= 1 ? RankChoice.Fixed(k) : throw new UsageException($"--rank: expected K ≥ 1; got {k}");
        double e = energy!.Value;
        return e > 0 && e <= 1 ? RankChoice.KeepEnergy(e) : throw new UsageException($"--energy: expected a fraction of the spectral energy in (0, 1]; got {e}");
    }
}

using LoraRuntime.Distributed;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Layers.Training;
using Spectre.Console;

namespace LoraRuntime.Cli.Training;

/// <summary>LoRA fine-tuning of a saved model: base frozen, one adapter trained, saved in PEFT's layout.</summary>
internal static class FinetuneRun
{
    /// <summary>
    /// Trains adapter "default" on <paramref name="text"/>; returns the run's summary and its log. With
    /// <paramref name="world"/>, this rank's part of a data-parallel run (rank 0 alone writes); with
    /// <paramref name="resume"/>, continues from the latest checkpoint in <c>outDir/checkpoints</c>.
    /// </summary>
    public static (TrainingSummary Summary, TrainingLog Log, long AdapterParameters, long BaseParameters) Run(
        Terminal terminal, Backend backend, string baseDir, string text, LoraConfig config, TrainOptions options, string outDir,
        WeightStorage? storage = null, Communicator? world = null, bool resume = false)
    {
        world ??= Communicator.SingleProcess;
        int rows = TrainingOptions.RowsOfRank(options, world);
        var (model, maybeTokenizer, layout) = ModelDirectory.Load(backend, baseDir, rows, training: true, storage);
        using (model)
        {
            var tokenizer = ModelDirectory.RequireTokenizer(maybeTokenizer, baseDir, layout);
            for (int i = 0; i < text.Length; i++)
                if (!tokenizer.CanEncode(text[i].ToString()))
                    throw new UsageException($"--data: character {(int)text[i]} ('{text[i]}') at position {i} is not in the base model's vocabulary");
            var (train, validation) = TrainingOptions.Split(tokenizer.Encode(text), model.Config.BlockSize);
            using var lora = new LoraModel(model);
            LoraAdapter adapter;
            try
            {
                adapter = lora.AddAdapter("default", config);
            }
            catch (ArgumentException e)
            {
                throw new UsageException($"--targets/--rank/--alpha: {e.Message}");
            }
            if (layout == ModelLayout.Gpt2 && adapter.Modules.FirstOrDefault(w => !w.Module.IsWholeLayer) is { } slice)
                throw new UsageException(
                    $"--targets: {slice.Module.Path} is a slice of the fused QKV projection; GPT-2's PEFT layout adapts c_attn whole: target qkv instead");
            if (layout == ModelLayout.Llama && adapter.Modules.FirstOrDefault(w => PeftTargets.ModuleName(layout, w.Module.Path) is null) is { } fused)
                throw new UsageException(
                    $"--targets: {fused.Module.Path} is one of our fused projections; the Llama layout has q, k, v and gate, up as separate modules: target those");
            using var gradients = TrainingOptions.GradientCommunicator(world, backend);
            using var trainer = new Trainer(model, adapter.Parameters, train, validation, options, gradients.Value, adapter);
            string checkpoints = Path.Combine(outDir, "checkpoints");
            TrainingRun.Start(terminal, trainer, outDir, checkpoints, resume);
            terminal.Error.MarkupLine(
                $"[grey]LoRA r = {config.Defaults.Rank}, α = {config.Defaults.Alpha} on {Markup.Escape(string.Join(",", config.TargetModules))}: " +
                $"{adapter.Parameters.Count:N0} trained parameters ({adapter.Modules.Count} modules), base {model.Parameters.Count:N0} frozen{TrainingOptions.RanksNote(world)}[/]");
            var log = new TrainingLog();
            var summary = TrainingRun.Run(terminal, trainer, "finetune", adapter.Parameters.Count,
                options.Batch * options.Accumulation * model.Config.BlockSize, checkpoints, log);
            if (world.Rank == 0)
            {
                PeftAdapterFiles.Save(adapter, config, outDir, Path.GetFullPath(baseDir), layout);
                LossPlot.Save(Path.Combine(outDir, "loss.png"), $"LoRA fine-tuning, r = {config.Defaults.Rank}", log);
            }
            return (summary, log, adapter.Parameters.Count, model.Parameters.Count);
        }
    }
}

using System.CommandLine;
using LoraRuntime.Cli.Bench;
using LoraRuntime.Cli.Training;

namespace LoraRuntime.Cli.Commands;

/// <summary><c>lora finetune</c>: trains a LoRA adapter on a saved model, base frozen, and saves it in PEFT's layout.</summary>
internal static class FinetuneCommand
{
    /// <summary>The command.</summary>
    public static Command Create(Terminal terminal)
    {
        var baseDir = new Option<string>("--base") { Description = "a model directory: written by lora train, or a Hugging Face GPT-2 checkpoint", Required = true };
        var data = new Option<string>("--data") { Description = "a UTF-8 text file in the base's vocabulary: the first 90% trains, the rest validates", Required = true };
        var output = new Option<string>("--out") { Description = "the adapter directory (adapter_config.json, adapter_model.safetensors, loss.png)", Required = true };
        var device = new Option<string?>("--device") { Description = "cpu, cuda or auto (default: $LORA_DEVICE, else auto)" };
        var json = new Option<string?>("--json") { Description = "write the run's summary to FILE", HelpName = "FILE" };
        var training = new TrainingOptions(iterations: 500);
        var adapter = new AdapterArgs();
        var quantize = QuantizeOption.Create();
        var resume = new Option<bool>("--resume") { Description = "continue from the latest checkpoint in --out/checkpoints (with the same or another number of ranks)" };
        var command = new Command("finetune", "Train a LoRA adapter on a saved model (base frozen; QLoRA with --quantize nf4); save it in PEFT's layout")
        {
            baseDir, data, output, device, json, quantize, resume,
        };
        adapter.AddTo(command);
        training.AddTo(command);
        command.SetAction(parse => DistributedAction.Run(terminal, (world, terminal) =>
        {
            LowRankArgs.CheckOutputDirectory(parse.GetValue(output)!, "--out", (parse.GetValue(baseDir), "--base"));
            string text = TrainingOptions.ReadCorpus(parse.GetValue(data)!, "--data");
            var options = training.Read(parse);
            var config = adapter.Read(parse, options.Seed);
            string? jsonPath = parse.GetValue(json);
            if (jsonPath is not null) OutputPath.CheckWritable(jsonPath, "--json");
            using var backend = BenchOptions.CreateBackend(parse.GetValue(device));
            string outDir = parse.GetValue(output)!;
            var (summary, log, _, _) = FinetuneRun.Run(terminal, backend, parse.GetValue(baseDir)!, text, config, options, outDir,
                QuantizeOption.Read(parse.GetValue(quantize), backend), world, parse.GetValue(resume));
            if (world.Rank != 0) return ExitCodes.Success; // rank 0 alone writes
            if (jsonPath is not null) TrainingRun.WriteJson(jsonPath, summary, backend.Name, log);
            TrainingOptions.Report(terminal, summary, outDir, "adapter_config.json, adapter_model.safetensors, loss.png, checkpoints/");
            return ExitCodes.Success;
        }));
        return command;
    }
}

using System.CommandLine;
using LoraRuntime.Cli.Bench;
using LoraRuntime.Cli.Training;
using LoraRuntime.Distributed;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Text;
using LoraRuntime.Layers.Training;
using Spectre.Console;

namespace LoraRuntime.Cli.Commands;

/// <summary><c>lora train</c>: pre-trains a character-level GPT on a text file (data parallel under <c>mpirun</c>).</summary>
internal static class TrainCommand
{
    /// <summary>The command.</summary>
    public static Command Create(Terminal terminal)
    {
        var data = new Option<string>("--data") { Description = "a UTF-8 text file: the first 90% trains, the rest validates", Required = true };
        var output = new Option<string>("--out") { Description = "the model directory to write (model.safetensors, config.json, checkpoints/, loss.png)", Required = true };
        var layers = new Option<int>("--layers") { Description = "transformer blocks", DefaultValueFactory = _ => 4 };
        var heads = new Option<int>("--heads") { Description = "attention heads", DefaultValueFactory = _ => 4 };
        var embd = new Option<int>("--embd") { Description = "channels C", DefaultValueFactory = _ => 128 };
        var block = new Option<int>("--block") { Description = "context length T", DefaultValueFactory = _ => 64 };
        var arch = new Option<string>("--arch") { Description = $"the block: {Architectures.Names} (RMSNorm, rotary positions, gated SiLU MLP, grouped-query attention)", DefaultValueFactory = _ => "gpt" };
        var resume = new Option<bool>("--resume") { Description = "continue from the latest checkpoint in --out/checkpoints" };
        var common = new TrainingOptions();
        var device = new Option<string?>("--device") { Description = "cpu, cuda or auto (default: $LORA_DEVICE, else auto)" };
        var json = new Option<string?>("--json") { Description = "write a summary {iters, train_loss, val_loss, ms_per_iter_median, tokens_per_s, …} to FILE", HelpName = "FILE" };
        var command = new Command("train", "Pre-train a small character-level GPT (or Llama-style model) on a text file")
        {
            data, output, layers, heads, embd, block, arch, resume, device, json,
        };
        common.AddTo(command);
        command.SetAction(parse => DistributedAction.Run(terminal, (world, terminal) =>
        {
            LowRankArgs.CheckOutputDirectory(parse.GetValue(output)!, "--out");
            string text = TrainingOptions.ReadCorpus(parse.GetValue(data)!, "--data");
            var tokenizer = CharTokenizer.FromCorpus(text);
            var config = Architectures.Apply(new GptConfig(tokenizer.Size, parse.GetValue(layers), parse.GetValue(heads), parse.GetValue(embd), parse.GetValue(block)),
                parse.GetValue(arch)!);
            TrainingOptions.Check(config.Validate, "--layers/--heads/--embd/--block");
            var options = common.Read(parse);
            string? jsonPath = parse.GetValue(json);
            if (jsonPath is not null) OutputPath.CheckWritable(jsonPath, "--json");
            return Execute(terminal, world, text, tokenizer, config, options, parse.GetValue(output)!, parse.GetValue(resume), parse.GetValue(device), jsonPath);
        }));
        return command;
    }

    private static int Execute(Terminal terminal, Communicator world, string text, CharTokenizer tokenizer, GptConfig config, TrainOptions options,
        string outDir, bool resume, string? device, string? jsonPath)
    {
        var (train, validation) = TrainingOptions.Split(tokenizer.Encode(text), config.BlockSize);
        int rows = TrainingOptions.RowsOfRank(options, world);
        using var backend = BenchOptions.CreateBackend(device);
        // Memory first, then the disk: the model and a checkpoint of it with Adam's moments, known before the run.
        ModelMemory.Check(backend, config, rows, training: true, trainParameters: true);
        if (world.Rank == 0) OutputPath.CheckFreeSpace(outDir, (long)(config.ParameterCount() * 4 * 4), "--out");
        using var model = new GptModel(backend, config, rows);
        model.Initialize(options.Seed);
        using var gradients = TrainingOptions.GradientCommunicator(world, backend);
        using var trainer = new Trainer(model, model.Parameters, train, validation, options, gradients.Value);
        string checkpoints = Path.Combine(outDir, "checkpoints");
        TrainingRun.Start(terminal, trainer, outDir, checkpoints, resume);
        terminal.Error.MarkupLine(
            $"[grey]{(config.Mlp == MlpKind.GatedSilu ? "Llama-style" : "GPT")} {config.Layers}L/{config.Heads}H/{config.Channels}C, T = {config.BlockSize}, V = {config.Vocabulary}: {model.Parameters.Count:N0} parameters on {backend.Name}; {train.Length:N0} training tokens{TrainingOptions.RanksNote(world)}[/]");
        var log = new TrainingLog();
        var summary = TrainingRun.Run(terminal, trainer, "train", model.Parameters.Count, options.Batch * options.Accumulation * config.BlockSize, checkpoints, log);
        if (world.Rank != 0) return ExitCodes.Success; // rank 0 alone writes
        GptFiles.Save(model, tokenizer, outDir);
        LossPlot.Save(Path.Combine(outDir, "loss.png"), $"pre-training {config.Layers}L/{config.Heads}H/{config.Channels}C", log);
        if (jsonPath is not null) TrainingRun.WriteJson(jsonPath, summary, backend.Name, log);
        TrainingOptions.Report(terminal, summary, outDir);
        return ExitCodes.Success;
    }
}

using System.CommandLine;
using System.Reflection;
using LoraRuntime.Cli.Bench;
using LoraRuntime.Cli.Training;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Layers.Text;
using LoraRuntime.Layers.Training;
using Spectre.Console;

namespace LoraRuntime.Cli.Commands;

/// <summary>
/// <c>lora demo</c>: pre-trains a small GPT on Tiny Shakespeare with one speaker's lines held out, fine-tunes a LoRA
/// adapter on that speaker alone, and shows generations with and without the adapter, both loss curves, the
/// adapter's size against the model's, and where the files went. Needs nothing but this program.
/// </summary>
internal static class DemoCommand
{
    /// <summary>The command.</summary>
    public static Command Create(Terminal terminal)
    {
        var output = new Option<string>("--out") { Description = "where the model, the adapter and the plots go", DefaultValueFactory = _ => "lora-demo" };
        var speaker = new Option<string>("--speaker") { Description = "the character whose lines the adapter learns (held out of pre-training)", DefaultValueFactory = _ => "JULIET" };
        var iters = new Option<int>("--iters") { Description = "pre-training steps", DefaultValueFactory = _ => 1500 };
        var finetuneIters = new Option<int>("--finetune-iters") { Description = "LoRA fine-tuning steps", DefaultValueFactory = _ => 400 };
        var tokens = new Option<int>("--tokens") { Description = "characters generated for each side of the comparison", DefaultValueFactory = _ => 240 };
        var device = new Option<string?>("--device") { Description = "cpu, cuda or auto (default: $LORA_DEVICE, else cpu for the demo)" };
        var arch = new Option<string>("--arch") { Description = $"the model's block: {Architectures.Names}", DefaultValueFactory = _ => "gpt" };
        var command = new Command("demo", "Pre-train a small GPT (or Llama-style model), fine-tune a LoRA adapter on one speaker, compare generations")
        {
            output, speaker, iters, finetuneIters, tokens, device, arch,
        };
        command.SetAction(parse => CliAction.Run(terminal, () => Execute(terminal, parse.GetValue(output)!, parse.GetValue(speaker)!,
            parse.GetValue(iters), parse.GetValue(finetuneIters), parse.GetValue(tokens), parse.GetValue(device) ?? "cpu", parse.GetValue(arch)!)));
        return command;
    }

    private static int Execute(Terminal terminal, string outDir, string speaker, int iters, int finetuneIters, int tokens, string device, string arch)
    {
        _ = Architectures.Apply(new GptConfig(2), arch); // a bad --arch is refused before anything runs
        if (iters < 1 || finetuneIters < 1) throw new UsageException("--iters and --finetune-iters: expected ≥ 1");
        if (tokens < 1) throw new UsageException($"--tokens: expected ≥ 1; got {tokens}");
        string corpus = ReadCorpus();
        (string speakerText, string others) split;
        try
        {
            split = SpeakerSplit.Split(corpus, speaker);
        }
        catch (ArgumentException e)
        {
            throw new UsageException($"--speaker: {e.Message}");
        }
        var tokenizer = CharTokenizer.FromCorpus(corpus);
        using var backend = BenchOptions.CreateBackend(device);
        string modelDir = Path.Combine(outDir, "model"), adapterDir = Path.Combine(outDir, "adapter-" + speaker.ToLowerInvariant());
        terminal.Out.Write(new Rule("[bold]1. pre-training[/] on Tiny Shakespeare without " + Markup.Escape(speaker)));
        terminal.Out.MarkupLine($"{split.others.Length:N0} characters for the base; {split.speakerText.Length:N0} characters of {Markup.Escape(speaker)} held out for the adapter");
        var config = Architectures.Apply(new GptConfig(tokenizer.Size), arch);
        var pretrain = new TrainOptions { Iterations = iters, EvalEvery = Math.Max(1, iters / 6), EvalIterations = 10 };
        var (train, validation) = TokenBatches.Split(tokenizer.Encode(split.others), config.BlockSize);
        TrainingSummary baseSummary;
        using (var model = new GptModel(backend, config, pretrain.Batch))
        {
            model.Initialize(pretrain.Seed);
            using var trainer = new Trainer(model, model.Parameters, train, validation, pretrain);
            var log = new TrainingLog();
            baseSummary = TrainingRun.Run(terminal, trainer, "pre-train", model.Parameters.Count, pretrain.Batch * config.BlockSize, null, log);
            GptFiles.Save(model, tokenizer, modelDir);
            LossPlot.Save(Path.Combine(modelDir, "loss.png"), "pre-training (Tiny Shakespeare without " + speaker + ")", log);
        }
        TrainingOptions.Report(terminal, baseSummary, modelDir, "model.safetensors, config.json, loss.png");

        terminal.Out.Write(new Rule($"[bold]2. LoRA fine-tuning[/] on {Markup.Escape(speaker)}'s lines"));
        // Every projection: q, k, v, o and the MLP's (fc, proj; or gate, up, down).
        string[] mlp = config.Mlp == MlpKind.GatedSilu ? ["gate", "up", "down"] : ["fc", "proj"];
        var lora = new LoraConfig { TargetModules = ["q", "k", "v", "o", .. mlp], Defaults = new LoraOptions { Rank = 8, Alpha = 16 } };
        var finetune = new TrainOptions { Iterations = finetuneIters, Warmup = Math.Min(50, finetuneIters / 5), EvalEvery = Math.Max(1, finetuneIters / 4), EvalIterations = 10 };
        var (ftSummary, ftLog, adapterParams, baseParams) = FinetuneRun.Run(terminal, backend, modelDir, split.speakerText, lora, finetune, adapterDir);
        float before = ftLog.Evaluations[0].Validation;
        TrainingOptions.Report(terminal, ftSummary, adapterDir, "adapter_config.json, adapter_model.safetensors, loss.png");
        terminal.Out.MarkupLine($"held-out {Markup.Escape(speaker)} loss: base [bold]{before:0.000}[/] → with adapter [bold]{ftSummary.ValidationLoss:0.000}[/]");

        terminal.Out.Write(new Rule("[bold]3. generations[/] (same prompt and seed)"));
        var sampling = new SamplingOptions(Temperature: 0.8f, TopK: 0, Seed: 7);
        string prompt = speaker.ToUpperInvariant() + ":\n";
        string without = GenerateCommand.Generate(backend, modelDir, null, prompt, tokens, sampling);
        string with = GenerateCommand.Generate(backend, modelDir, adapterDir, prompt, tokens, sampling);
        var table = new Table().AddColumn("base model").AddColumn($"base + LoRA adapter ({Markup.Escape(speaker)})");
        table.AddRow(Markup.Escape(without), Markup.Escape(with));
        terminal.Out.Write(table);

        terminal.Out.Write(new Rule("[bold]4. sizes and files[/]"));
        long modelBytes = new FileInfo(Path.Combine(modelDir, GptFiles.ModelFile)).Length;
        long adapterBytes = new FileInfo(Path.Combine(adapterDir, PeftAdapterFiles.WeightsFile)).Length;
        var sizes = new Table().AddColumn("").AddColumn(new TableColumn("parameters").RightAligned()).AddColumn(new TableColumn("file").RightAligned());
        sizes.AddRow("base model", $"{baseParams:N0}", $"{modelBytes / 1024.0:N0} KiB");
        sizes.AddRow("LoRA adapter (r = 8)", $"{adapterParams:N0} ({100.0 * adapterParams / baseParams:0.0}%)", $"{adapterBytes / 1024.0:N0} KiB");
        terminal.Out.Write(sizes);
        terminal.Out.MarkupLine($"model:   [blue]{Markup.Escape(Path.GetFullPath(modelDir))}[/]");
        terminal.Out.MarkupLine($"adapter: [blue]{Markup.Escape(Path.GetFullPath(adapterDir))}[/] (PEFT layout)");
        terminal.Out.MarkupLine($"loss curves: [blue]{Markup.Escape(Path.GetFullPath(Path.Combine(modelDir, "loss.png")))}[/], [blue]{Markup.Escape(Path.GetFullPath(Path.Combine(adapterDir, "loss.png")))}[/]");
        terminal.Out.MarkupLine($"try: [grey]dotnet run --project Cli -c Release -- generate --base {Markup.Escape(modelDir)} --adapter {Markup.Escape(adapterDir)}:1.0 --prompt \"{Markup.Escape(speaker)}:\" --tokens 300[/]");
        return ExitCodes.Success;
    }

    internal static string ReadCorpus()
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("tinyshakespeare.txt")
            ?? throw new InvalidOperationException("the embedded Tiny Shakespeare corpus is missing from this build");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}

using System.CommandLine;
using LoraRuntime.Cli.Bench;
using LoraRuntime.Layers;
using Spectre.Console;

namespace LoraRuntime.Cli.Commands;

/// <summary><c>lora quantize</c>: a GPT-2 or Llama-family model, its weights in a chosen format, written as a GGUF file llama.cpp loads.</summary>
internal static class QuantizeCommand
{
    /// <summary>The command.</summary>
    public static Command Create(Terminal terminal)
    {
        var baseDir = new Option<string?>("--base") { Description = "a GPT-2 or Llama-family model directory (a Hugging Face checkpoint, or ours)" };
        var preset = new Option<string?>("--model")
        {
            Description = $"instead of --base, random weights in a preset's shape (the weights lora bench latency runs): {LatencyModel.Presets}",
            HelpName = "PRESET",
        };
        var context = new Option<int>("--context") { Description = "the context a preset model is written with", DefaultValueFactory = _ => 512 };
        var format = new Option<string>("--format") { Description = "the weights' type: f32, f16, bf16, q8_0 or q4_0", DefaultValueFactory = _ => "q8_0", HelpName = "FORMAT" };
        var output = new Option<string>("--out") { Description = "the GGUF file to write", Required = true, HelpName = "FILE" };
        var device = new Option<string?>("--device") { Description = "cpu, cuda or auto (default: $LORA_DEVICE, else auto)" };
        var adapterDir = new Option<string?>("--adapter") { Description = "with --base, also write this PEFT adapter of it as a llama.cpp GGUF adapter", HelpName = "DIR" };
        var adapterOut = new Option<string?>("--adapter-out") { Description = "where --adapter's GGUF file goes", HelpName = "FILE" };
        var command = new Command("quantize", "Write a GPT-2 or Llama-family model as a GGUF file, its weights in F32, F16, BF16, Q8_0 or Q4_0")
        {
            baseDir, preset, context, format, output, device, adapterDir, adapterOut,
        };
        command.SetAction(parse => CliAction.Run(terminal, () =>
        {
            string? dir = parse.GetValue(baseDir), model = parse.GetValue(preset);
            if ((dir is null) == (model is null)) throw new UsageException("--base/--model: give one of them");
            var storage = QuantizeOption.Read(parse.GetValue(format), backend: null);
            if (storage.Format == WeightFormat.NF4) throw new UsageException("--format: GGUF has no NF4 type; expected f32, f16, bf16, q8_0 or q4_0");
            string path = parse.GetValue(output)!;
            OutputPath.CheckWritable(path, "--out");
            string? adapterSource = parse.GetValue(adapterDir), adapterPath = parse.GetValue(adapterOut);
            if ((adapterSource is null) != (adapterPath is null)) throw new UsageException("--adapter/--adapter-out: give both or neither");
            if (adapterSource is not null && dir is null) throw new UsageException("--adapter: needs --base, the model the adapter was trained on");
            if (adapterPath is not null) OutputPath.CheckWritable(adapterPath, "--adapter-out");
            using var backend = BenchOptions.CreateBackend(parse.GetValue(device));
            GptModel gpt;
            string name;
            Layers.Text.ITokenizer? tokenizer = null;
            var layout = ModelLayout.LoraRuntime;
            if (dir is not null)
            {
                (gpt, tokenizer, layout) = ModelDirectory.Load(backend, dir, maxBatch: 1, storage: storage);
                name = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir)));
            }
            else
            {
                if (model == "demo") throw new UsageException("--model: the demo's character model has no GGUF vocabulary; expected gpt2-small, smollm2-135m, qwen2.5-0.5b or llama3.2-1b");
                var config = LatencyModel.Parse(model!, BenchData.Positive(parse.GetValue(context), "--context")).Config;
                gpt = new GptModel(backend, config, 1, training: false, trainParameters: false,
                    storage.FormatsFor(_ => WeightFormat.F32));
                gpt.Initialize(7, scaleResidual: true); // the seed lora bench latency uses: the same weights
                name = model!;
            }
            using (gpt)
            {
                try
                {
                    GgufModelFile.Write(gpt, path, name, tokenizer);
                }
                catch (ArgumentException e)
                {
                    throw new UsageException($"--base: {e.Message}");
                }
                if (tokenizer is not null && !GgufModelFile.CarriesVocabulary(tokenizer, gpt.Config.Vocabulary))
                    terminal.Error.MarkupLine("[yellow]the model's tokenizer has no form llama.cpp runs (a SentencePiece vocabulary, or a split llama.cpp has no name for): " +
                        "the file holds a placeholder vocabulary and runs on token ids[/]");
                if (adapterSource is not null)
                {
                    using var lora = new Layers.Adapters.LoraModel(gpt);
                    var adapter = Layers.Adapters.PeftAdapterFiles.Load(lora, "adapter", adapterSource, layout);
                    try
                    {
                        Layers.Adapters.GgufAdapterFile.Write(adapter, gpt, adapterPath!);
                    }
                    catch (ArgumentException e)
                    {
                        throw new UsageException($"--adapter: {e.Message}");
                    }
                    terminal.Error.MarkupLine($"[grey]wrote {Markup.Escape(Path.GetFullPath(adapterPath!))} ({adapter.Modules.Count} LoRA pairs)[/]");
                }
            }
            terminal.Error.MarkupLine($"[grey]wrote {Markup.Escape(Path.GetFullPath(path))} ({new FileInfo(path).Length / 1048576.0:0.0} MiB, {storage})[/]");
            return ExitCodes.Success;
        }));
        return command;
    }
}

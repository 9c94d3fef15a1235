using System.CommandLine;
using System.Globalization;
using LoraRuntime.Cli.Bench;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;

namespace LoraRuntime.Cli.Commands;

/// <summary><c>lora generate</c>: sample text from a saved model, optionally with a PEFT adapter at a scale.</summary>
internal static class GenerateCommand
{
    /// <summary>The command.</summary>
    public static Command Create(Terminal terminal)
    {
        var baseDir = new Option<string>("--base") { Description = "a model directory: written by lora train, or a Hugging Face GPT-2 checkpoint", Required = true };
        var adapterArg = new Option<string?>("--adapter") { Description = "a PEFT adapter directory or a llama.cpp GGUF adapter, optionally with a scale: DIR[:scale]", HelpName = "DIR[:scale]" };
        var prompt = new Option<string>("--prompt") { Description = "the text to continue", DefaultValueFactory = _ => "\n" };
        var tokens = new Option<int>("--tokens") { Description = "tokens to generate", DefaultValueFactory = _ => 200 };
        var temperature = new Option<float>("--temperature") { Description = "sampling temperature (0: greedy)", DefaultValueFactory = _ => 0.8f };
        var topK = new Option<int>("--top-k") { Description = "sample among the K most likely tokens (0: all)", DefaultValueFactory = _ => 0 };
        var seed = new Option<ulong>("--seed") { Description = "seed of the draws", DefaultValueFactory = _ => 1337UL };
        var device = new Option<string?>("--device") { Description = "cpu, cuda or auto (default: $LORA_DEVICE, else auto)" };
        var quantize = QuantizeOption.Create();
        var command = new Command("generate", "Generate text with a saved model and, optionally, a LoRA adapter")
        {
            baseDir, adapterArg, prompt, tokens, temperature, topK, seed, device, quantize,
        };
        command.SetAction(parse => CliAction.Run(terminal, () =>
        {
            var sampling = new SamplingOptions(parse.GetValue(temperature), parse.GetValue(topK), parse.GetValue(seed));
            Training.TrainingOptions.Check(sampling.Validate, "--temperature/--top-k");
            if (parse.GetValue(tokens) < 0) throw new UsageException($"--tokens: expected ≥ 0; got {parse.GetValue(tokens)}");
            using var backend = BenchOptions.CreateBackend(parse.GetValue(device));
            terminal.OutWriter.WriteLine(Generate(backend, parse.GetValue(baseDir)!, parse.GetValue(adapterArg), parse.GetValue(prompt) ?? "",
                parse.GetValue(tokens), sampling, QuantizeOption.Read(parse.GetValue(quantize), backend)));
            return ExitCodes.Success;
        }));
        return command;
    }

    /// <summary>The prompt and its continuation.</summary>
    public static string Generate(Backend backend, string baseDir, string? adapterSpec, string prompt, int count, SamplingOptions sampling,
        WeightStorage? storage = null)
    {
        var (model, maybeTokenizer, layout) = ModelDirectory.Load(backend, baseDir, maxBatch: 1, storage: storage);
        using (model)
        {
            var tokenizer = ModelDirectory.RequireTokenizer(maybeTokenizer, baseDir, layout);
            if (prompt.Length == 0) throw new UsageException("--prompt: expected at least one character");
            if (!tokenizer.CanEncode(prompt)) throw new UsageException("--prompt: a character is not in the model's vocabulary");
            using var lora = new LoraModel(model);
            if (adapterSpec is not null)
            {
                var (dir, scale) = ParseAdapter(adapterSpec);
                // A GGUF file is a llama.cpp adapter; a folder, PEFT's.
                var adapter = GgufCheckpoint.IsGguf(dir) ? GgufAdapterFile.Load(lora, model, "adapter", dir) : PeftAdapterFiles.Load(lora, "adapter", dir, layout);
                if (scale != 1f)
                    foreach (var w in adapter.Modules) backend.Scale(w.B.Value, w.B.Value, scale);
            }
            using var generator = new Generator(model);
            // The prompt as the tokenizer frames it (Llama's begin-of-text first); generation ends at its end of sequence.
            int[] ids = tokenizer.EncodePrompt(prompt);
            int[] all = generator.Generate(ids, count, sampling, tokenizer.EndOfSequence);
            return prompt + tokenizer.Decode(all.AsSpan(ids.Length));
        }
    }

    /// <summary>Splits "DIR[:scale]" (a trailing ":number" is the scale, else 1).</summary>
    internal static (string Dir, float Scale) ParseAdapter(string spec)
    {
        int colon = spec.LastIndexOf(':');
        if (colon > 0 && float.TryParse(spec[(colon + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out float scale))
        {
            if (!float.IsFinite(scale)) throw new UsageException($"--adapter: the scale must be finite; got '{spec[(colon + 1)..]}'");
            return (spec[..colon], scale);
        }
        return (spec, 1f);
    }
}

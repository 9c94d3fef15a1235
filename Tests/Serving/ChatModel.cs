using System.Text.Json;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Layers.Text;

namespace LoraRuntime.Tests.Serving;

/// <summary>
/// A small Llama-style chat model in our layout: GPT-2's tokenizer.json, SmolLM2's chat template and end of sequence
/// &lt;|endoftext|&gt; in its tokenizer_config.json; an adapter on q and v ("adapter"), and the same adapter carrying
/// its own template ("templated": "[role] content" lines, then "[assistant]").
/// </summary>
internal static class ChatModel
{
    public sealed record Files(string Model, string Adapter, string Templated, HuggingFaceTokenizer Tokenizer, ChatTemplate Template);

    public static Files Write(Backend backend, string root)
    {
        string source = Path.Combine(root, "tokenizer");
        Directory.CreateDirectory(source);
        File.Copy(Text.HuggingFaceTokenizerTests.Gpt2File.Value, Path.Combine(source, HuggingFaceTokenizer.FileName));
        string smol = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Text", "Templates", "smollm2-instruct.jinja"));
        File.WriteAllText(Path.Combine(source, HuggingFaceTokenizer.ConfigFileName),
            JsonSerializer.Serialize(new Dictionary<string, object> { ["chat_template"] = smol, ["eos_token"] = "<|endoftext|>", ["bos_token"] = "<|endoftext|>" }));
        var tokenizer = HuggingFaceTokenizer.FromFile(Path.Combine(source, HuggingFaceTokenizer.FileName));
        var config = LoraRuntime.Cli.Training.Architectures.Apply(new GptConfig(50257, 1, 2, 16, 160), "llama");
        string model = Path.Combine(root, "model"), adapter = Path.Combine(root, "adapter"), templated = Path.Combine(root, "templated");
        using (var gpt = new GptModel(backend, config, maxBatch: 1, training: false, trainParameters: false))
        {
            gpt.Initialize(3);
            GptFiles.Save(gpt, tokenizer, model);
            using var lora = new LoraModel(gpt);
            var loraConfig = new LoraConfig { TargetModules = ["q", "v"], Defaults = new LoraOptions { Rank = 2, Alpha = 4, Init = LoraInit.Random, Seed = 4 } };
            var weights = lora.AddAdapter("a", loraConfig);
            PeftAdapterFiles.Save(weights, loraConfig, adapter, "tiny");
            PeftAdapterFiles.Save(weights, loraConfig, templated, "tiny");
            File.WriteAllText(Path.Combine(templated, ChatTemplate.JinjaFileName), "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant]");
        }
        return new Files(model, adapter, templated, tokenizer, ChatTemplate.Parse(smol));
    }
}

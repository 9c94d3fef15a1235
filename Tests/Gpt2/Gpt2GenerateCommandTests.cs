using LoraRuntime.Cli;
using LoraRuntime.IO;
using LoraRuntime.Layers.Text;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Gpt2;

/// <summary><c>lora generate --base GPT2DIR --adapter PEFTDIR</c> on a Hugging Face GPT-2 directory and a PEFT adapter made for it.</summary>
public sealed class Gpt2GenerateCommandTests : IDisposable
{
    private readonly StringWriter _out = new(), _error = new();
    private readonly Gpt2Fixture _files = new();

    public void Dispose() => _files.Dispose();

    private int Run(params string[] args) => LoraApp.Run(args, Terminal.ForWriters(_out, _error));

    [Fact]
    public void GeneratesWithAGpt2CheckpointItsBpeAndAPeftAdapter()
    {
        // 256 byte tokens, two merges and <|endoftext|>: V = 259.
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int b = 0; b < 256; b++) vocab[ByteLevel.Char((byte)b).ToString()] = b;
        (string, string)[] merges = [("h", "e"), ("l", "l")];
        foreach (var (a, b) in merges) vocab[a + b] = vocab.Count;
        vocab[BpeTokenizer.EndOfText] = vocab.Count;
        var tokenizer = new BpeTokenizer(vocab, merges);
        var tensors = Gpt2Fixture.RandomTensors(seed: 70, vocabulary: tokenizer.VocabularySize);
        string baseDir = _files.Write(tensors, config: Gpt2Fixture.ConfigJson(("vocab_size", $"{tokenizer.VocabularySize}")));
        tokenizer.Save(baseDir);

        string adapterDir = Path.Combine(_files.Root, "adapter");
        Directory.CreateDirectory(adapterDir);
        File.WriteAllText(Path.Combine(adapterDir, "adapter_config.json"),
            "{\"peft_type\": \"LORA\", \"task_type\": \"CAUSAL_LM\", \"r\": 2, \"lora_alpha\": 4, \"target_modules\": [\"c_attn\"], \"fan_in_fan_out\": true, \"bias\": \"none\"}");
        var writer = new SafetensorsWriter();
        var reference = new Gpt2Reference(Gpt2Fixture.ReadBack(baseDir), Gpt2Fixture.Layers, Gpt2Fixture.Heads, Gpt2Fixture.Channels);
        int c = Gpt2Fixture.Channels;
        for (int l = 0; l < Gpt2Fixture.Layers; l++)
        {
            var a = Reference.Random(2 * c, 80 + l);
            var b = Reference.Random(3 * c * 2, 90 + l);
            writer.Add($"base_model.model.transformer.h.{l}.attn.c_attn.lora_A.weight", a, 2, c);
            writer.Add($"base_model.model.transformer.h.{l}.attn.c_attn.lora_B.weight", b, 3 * c, 2);
            reference.Adapters[$"h.{l}.attn.c_attn"] = new ReferenceLora(Reference.ToDouble(a), Reference.ToDouble(b), 2, 4.0 / 2);
        }
        writer.Save(Path.Combine(adapterDir, "adapter_model.safetensors"));

        // Greedy decoding's first token is the float64 reference's argmax after the prompt.
        const string prompt = "hello";
        var ids = tokenizer.Encode(prompt);
        Assert.Equal([256, 257, 111], ids);
        var logits = reference.Logits(ids);
        int v = tokenizer.VocabularySize, last = (ids.Length - 1) * v;
        int argmax = Enumerable.Range(0, v).MaxBy(k => logits[last + k]);
        Assert.Equal(0, Run("generate", "--base", baseDir, "--adapter", adapterDir, "--prompt", prompt, "--tokens", "1", "--temperature", "0"));
        Assert.Equal(prompt + tokenizer.Decode([argmax]), _out.ToString().TrimEnd('\r', '\n'));
        _out.GetStringBuilder().Clear();
        Assert.Equal(0, Run("generate", "--base", baseDir, "--adapter", adapterDir + ":0.5", "--prompt", "héllo wörld", "--tokens", "8"));
        Assert.StartsWith("héllo wörld", _out.ToString());

        // Compressed at full energy it is a model of ours that keeps GPT-2's BPE and takes GPT-2-named adapters: the same greedy token.
        string compressed = Path.Combine(_files.Root, "compressed");
        Assert.Equal(0, Run("compress", "--model", baseDir, "--energy", "1", "--out", compressed));
        Assert.True(File.Exists(Path.Combine(compressed, BpeTokenizer.MergesFile)));
        _out.GetStringBuilder().Clear();
        Assert.Equal(0, Run("generate", "--base", compressed, "--adapter", adapterDir, "--prompt", prompt, "--tokens", "1", "--temperature", "0"));
        Assert.Equal(prompt + tokenizer.Decode([argmax]), _out.ToString().TrimEnd('\r', '\n'));

        // Fine-tuning a GPT-2 base writes an adapter in PEFT's GPT-2 layout, which generate then loads.
        string corpus = Path.Combine(_files.Root, "corpus.txt"), tuned = Path.Combine(_files.Root, "tuned");
        File.WriteAllText(corpus, string.Concat(Enumerable.Repeat("hello world, hello again. ", 40)));
        Assert.Equal(0, Run("finetune", "--base", baseDir, "--data", corpus, "--out", tuned, "--iters", "2", "--batch", "2",
            "--eval-every", "2", "--eval-iters", "1", "--rank", "2", "--targets", "qkv,proj"));
        using (var saved = SafetensorsReader.Open(Path.Combine(tuned, "adapter_model.safetensors")))
            Assert.Equal([2L, c], saved["base_model.model.transformer.h.1.attn.c_attn.lora_A.weight"].Shape);
        Assert.Equal(0, Run("generate", "--base", baseDir, "--adapter", tuned, "--prompt", prompt, "--tokens", "4"));
        Assert.Equal(2, Run("finetune", "--base", baseDir, "--data", corpus, "--out", tuned, "--iters", "1", "--targets", "q,v"));
        Assert.Contains("c_attn", _error.ToString());

        // Without vocab.json, a GPT-2 directory cannot tokenize a prompt: a clear error, exit code 2.
        File.Delete(Path.Combine(baseDir, BpeTokenizer.VocabularyFile));
        Assert.Equal(2, Run("generate", "--base", baseDir, "--prompt", prompt, "--tokens", "1"));
        Assert.Contains("vocab.json", _error.ToString());
        Assert.Equal(2, Run("generate", "--base", Path.Combine(_files.Root, "nowhere"), "--prompt", prompt));
    }
}

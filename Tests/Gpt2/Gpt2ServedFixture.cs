using LoraRuntime.IO;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Layers.Text;
using LoraRuntime.Tests.Support;

namespace LoraRuntime.Tests.Gpt2;

/// <summary>
/// A tiny Hugging Face GPT-2 directory with its BPE tokenizer (the 256 byte tokens, two merges, &lt;|endoftext|&gt;: V = 259)
/// and a PEFT adapter made for it (c_attn and mlp.c_fc of every block, R = 2, α = 4), with the float64 reference of both.
/// </summary>
internal sealed class Gpt2ServedFixture : IDisposable
{
    public const int Rank = 2;
    public const double AdapterScale = 4.0 / Rank;
    private readonly Gpt2Fixture _files = new();
    private readonly Dictionary<string, ReferenceLora> _adapter = new(StringComparer.Ordinal);

    public Gpt2ServedFixture()
    {
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int b = 0; b < 256; b++) vocab[ByteLevel.Char((byte)b).ToString()] = b;
        (string, string)[] merges = [("h", "e"), ("l", "l")];
        foreach (var (a, b) in merges) vocab[a + b] = vocab.Count;
        vocab[BpeTokenizer.EndOfText] = vocab.Count;
        Tokenizer = new BpeTokenizer(vocab, merges);
        BaseDir = _files.Write(Gpt2Fixture.RandomTensors(seed: 170, vocabulary: Tokenizer.VocabularySize),
            config: Gpt2Fixture.ConfigJson(("vocab_size", $"{Tokenizer.VocabularySize}")));
        Tokenizer.Save(BaseDir);

        AdapterDir = Path.Combine(_files.Root, "adapter");
        Directory.CreateDirectory(AdapterDir);
        File.WriteAllText(Path.Combine(AdapterDir, PeftAdapterFiles.ConfigFile),
            $"{{\"peft_type\": \"LORA\", \"task_type\": \"CAUSAL_LM\", \"r\": {Rank}, \"lora_alpha\": 4, \"target_modules\": [\"c_attn\", \"c_fc\"], \"fan_in_fan_out\": true, \"bias\": \"none\"}}");
        var writer = new SafetensorsWriter();
        int c = Gpt2Fixture.Channels, seed = 180;
        for (int l = 0; l < Gpt2Fixture.Layers; l++)
            foreach (var (module, fanOut) in new[] { ("attn.c_attn", 3 * c), ("mlp.c_fc", 4 * c) })
            {
                var a = Reference.Random(Rank * c, seed++);
                var b = Reference.Random(fanOut * Rank, seed++);
                writer.Add($"base_model.model.transformer.h.{l}.{module}.lora_A.weight", a, Rank, c);
                writer.Add($"base_model.model.transformer.h.{l}.{module}.lora_B.weight", b, fanOut, Rank);
                _adapter[$"h.{l}.{module}"] = new ReferenceLora(Reference.ToDouble(a), Reference.ToDouble(b), Rank, AdapterScale);
            }
        writer.Save(Path.Combine(AdapterDir, PeftAdapterFiles.WeightsFile));
    }

    public BpeTokenizer Tokenizer { get; }
    public string BaseDir { get; }
    public string AdapterDir { get; }
    public string Root => _files.Root;

    /// <summary>The float64 logits [V] after <paramref name="ids"/>: the base (null), or the adapter at <paramref name="multiplier"/> times its scale.</summary>
    public double[] LastLogits(int[] ids, double? multiplier)
    {
        var reference = new Gpt2Reference(Gpt2Fixture.ReadBack(BaseDir), Gpt2Fixture.Layers, Gpt2Fixture.Heads, Gpt2Fixture.Channels);
        if (multiplier is { } m)
            foreach (var (name, lora) in _adapter) reference.Adapters[name] = lora with { Scale = lora.Scale * m };
        var logits = reference.Logits(ids);
        int v = Tokenizer.VocabularySize;
        return logits.AsSpan((ids.Length - 1) * v, v).ToArray();
    }

    public void Dispose() => _files.Dispose();
}

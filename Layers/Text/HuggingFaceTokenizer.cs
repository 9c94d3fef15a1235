using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;
using MlBpeTokenizer = Microsoft.ML.Tokenizers.BpeTokenizer;

namespace LoraRuntime.Layers.Text;

/// <summary>
/// A byte-level BPE tokenizer read from Hugging Face's <c>tokenizer.json</c> — GPT-2's, Llama 3's, Qwen2's, SmolLM2's —
/// on Microsoft.ML.Tokenizers' BPE: the pre-tokenizer's regular expression (ByteLevel's GPT-2 pattern, or a Split
/// pattern before a ByteLevel step), each piece looked up whole first when the model says <c>ignore_merges</c>
/// (tiktoken's rule), else merged; an NFC normaliser; the added tokens matched as themselves. What it does not compute
/// as Hugging Face does is refused naming the key: another model type, byte fallback (SentencePiece-style BPE: Llama 2,
/// Mistral, TinyLlama), continuing-subword prefixes, other pre-tokenizers or normalisers.
/// </summary>
internal sealed partial class HuggingFaceTokenizer : ITokenizer
{
    /// <summary>The file's name in a model directory.</summary>
    public const string FileName = "tokenizer.json";

    /// <summary>GPT-2's pre-tokenisation pattern, which ByteLevel with use_regex applies.</summary>
    private const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private readonly MlBpeTokenizer _bpe;
    private readonly Regex _split;
    private readonly Dictionary<string, int> _vocabulary, _special;
    private readonly Dictionary<int, string> _specialById;
    private readonly Regex? _specialPattern;
    private readonly bool _ignoreMerges, _nfc;

    private HuggingFaceTokenizer(Dictionary<string, int> vocabulary, IReadOnlyList<string> merges, Regex split, Dictionary<string, int> special,
        bool ignoreMerges, bool nfc)
    {
        _vocabulary = vocabulary;
        _special = special;
        _specialById = special.ToDictionary(kv => kv.Value, kv => kv.Key);
        _split = split;
        _ignoreMerges = ignoreMerges;
        _nfc = nfc;
        // The pieces reach the BPE one at a time, already split: its pre-tokenizer takes each whole (its default would
        // split on white space and drop it).
        _bpe = MlBpeTokenizer.Create(new BpeOptions(vocabulary)
        {
            Merges = merges, ByteLevel = true, PreTokenizer = new RegexPreTokenizer(WholeText(), null),
        });
        if (special.Count > 0)
            _specialPattern = new Regex(string.Join("|", special.Keys.OrderByDescending(k => k.Length).Select(Regex.Escape)), RegexOptions.CultureInvariant);
        VocabularySize = Math.Max(vocabulary.Values.DefaultIfEmpty(-1).Max(), special.Values.DefaultIfEmpty(-1).Max()) + 1;
    }

    /// <inheritdoc/>
    public int VocabularySize { get; }

    /// <summary>The added tokens by content.</summary>
    public IReadOnlyDictionary<string, int> SpecialTokens => _special;

    /// <summary>Reads <paramref name="path"/>; an unsupported part is an <see cref="InvalidDataException"/> naming its key.</summary>
    public static HuggingFaceTokenizer FromFile(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no tokenizer.json", path);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            return Parse(doc.RootElement, path);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON: {e.Message}", e);
        }
    }

    private static HuggingFaceTokenizer Parse(JsonElement root, string path)
    {
        var model = root.GetProperty("model");
        string type = model.TryGetProperty("type", out var t) ? t.GetString() ?? "" : "";
        if (type != "BPE") throw Unsupported(path, "model.type", type, "BPE");
        if (model.TryGetProperty("byte_fallback", out var fallback) && fallback.ValueKind == JsonValueKind.True)
            throw Unsupported(path, "model.byte_fallback", "true", "false (SentencePiece-style BPE with byte fallback is not read yet)");
        foreach (string key in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            if (model.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String && v.GetString()!.Length > 0)
                throw Unsupported(path, "model." + key, v.GetString()!, "null");
        var vocabulary = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in model.GetProperty("vocab").EnumerateObject()) vocabulary[entry.Name] = entry.Value.GetInt32();
        var merges = new List<string>();
        foreach (var merge in model.GetProperty("merges").EnumerateArray())
            merges.Add(merge.ValueKind == JsonValueKind.Array ? $"{merge[0].GetString()} {merge[1].GetString()}" : merge.GetString() ?? "");
        bool ignoreMerges = model.TryGetProperty("ignore_merges", out var ignore) && ignore.ValueKind == JsonValueKind.True;

        bool nfc = false;
        if (root.TryGetProperty("normalizer", out var normalizer) && normalizer.ValueKind != JsonValueKind.Null)
        {
            string kind = normalizer.GetProperty("type").GetString() ?? "";
            if (kind != "NFC") throw Unsupported(path, "normalizer.type", kind, "null or NFC");
            nfc = true;
        }
        var special = new Dictionary<string, int>(StringComparer.Ordinal);
        if (root.TryGetProperty("added_tokens", out var added) && added.ValueKind == JsonValueKind.Array)
            foreach (var token in added.EnumerateArray())
                special[token.GetProperty("content").GetString() ?? ""] = token.GetProperty("id").GetInt32();
        return new HuggingFaceTokenizer(vocabulary, merges, new Regex(Pattern(root, path), RegexOptions.CultureInvariant), special, ignoreMerges, nfc);
    }

    /// <summary>The pre-tokenizer's pattern: ByteLevel with use_regex (GPT-2's), or a Split pattern followed by ByteLevel without it.</summary>
    private static string Pattern(JsonElement root, string path)
    {
        if (!root.TryGetProperty("pre_tokenizer", out var pre) || pre.ValueKind == JsonValueKind.Null)
            throw Unsupported(path, "pre_tokenizer", "null", "ByteLevel, or Sequence [Split, ByteLevel]");
        string kind = pre.GetProperty("type").GetString() ?? "";
        if (kind == "ByteLevel")
        {
            CheckByteLevel(pre, path, "pre_tokenizer", expectRegex: true);
            return Gpt2Pattern;
        }
        if (kind != "Sequence") throw Unsupported(path, "pre_tokenizer.type", kind, "ByteLevel or Sequence");
        var steps = pre.GetProperty("pretokenizers").EnumerateArray().ToArray();
        if (steps.Length != 2 || steps[0].GetProperty("type").GetString() != "Split" || steps[1].GetProperty("type").GetString() != "ByteLevel")
            throw Unsupported(path, "pre_tokenizer.pretokenizers", string.Join(", ", steps.Select(s => s.GetProperty("type").GetString())), "Split, ByteLevel");
        var split = steps[0];
        string behavior = split.TryGetProperty("behavior", out var b) ? b.GetString() ?? "" : "";
        if (behavior != "Isolated") throw Unsupported(path, "pre_tokenizer.pretokenizers[0].behavior", behavior, "Isolated");
        if (split.TryGetProperty("invert", out var invert) && invert.ValueKind == JsonValueKind.True)
            throw Unsupported(path, "pre_tokenizer.pretokenizers[0].invert", "true", "false");
        CheckByteLevel(steps[1], path, "pre_tokenizer.pretokenizers[1]", expectRegex: false);
        var pattern = split.GetProperty("pattern");
        return pattern.TryGetProperty("Regex", out var regex) ? regex.GetString() ?? ""
            : Regex.Escape(pattern.GetProperty("String").GetString() ?? "");
    }

    private static void CheckByteLevel(JsonElement step, string path, string key, bool expectRegex)
    {
        if (step.TryGetProperty("add_prefix_space", out var prefix) && prefix.ValueKind == JsonValueKind.True)
            throw Unsupported(path, key + ".add_prefix_space", "true", "false");
        bool useRegex = !step.TryGetProperty("use_regex", out var r) || r.ValueKind != JsonValueKind.False;
        if (useRegex != expectRegex) throw Unsupported(path, key + ".use_regex", useRegex ? "true" : "false", expectRegex ? "true" : "false");
    }

    private static InvalidDataException Unsupported(string path, string key, string value, string expected) =>
        new($"{path}: {key} = {value} is not supported; expected {expected}");

    [GeneratedRegex(@"[\s\S]+", RegexOptions.CultureInvariant)]
    private static partial Regex WholeText();

    /// <inheritdoc/>
    public bool CanEncode(string text) => text is not null;

    /// <inheritdoc/>
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (_nfc) text = text.Normalize(NormalizationForm.FormC);
        var ids = new List<int>(text.Length / 3 + 1);
        int at = 0;
        if (_specialPattern is not null)
            foreach (Match special in _specialPattern.Matches(text))
            {
                EncodeOrdinary(text.AsSpan(at, special.Index - at), ids);
                ids.Add(_special[special.Value]);
                at = special.Index + special.Length;
            }
        EncodeOrdinary(text.AsSpan(at), ids);
        return ids.ToArray();
    }

    /// <summary>Text without added tokens: split by the pattern, each piece whole (ignore_merges) or merged.</summary>
    private void EncodeOrdinary(ReadOnlySpan<char> text, List<int> ids)
    {
        if (text.IsEmpty) return;
        string s = text.ToString();
        foreach (Match piece in _split.Matches(s))
        {
            if (_ignoreMerges && _vocabulary.TryGetValue(ByteLevel.Encode(Encoding.UTF8.GetBytes(piece.Value)), out int whole))
            {
                ids.Add(whole);
                continue;
            }
            ids.AddRange(_bpe.EncodeToIds(piece.Value));
        }
    }

    /// <inheritdoc/>
    public string Decode(ReadOnlySpan<int> ids)
    {
        foreach (int id in ids)
            if ((uint)id >= (uint)VocabularySize) throw new ArgumentOutOfRangeException(nameof(ids), id, $"ids: id {id} is outside [0, V = {VocabularySize})");
        // Runs of ordinary ids decode through the BPE (bytes joined across tokens); added tokens are their text.
        var text = new StringBuilder();
        var run = new List<int>();
        foreach (int id in ids)
        {
            if (!_specialById.TryGetValue(id, out string? special))
            {
                run.Add(id);
                continue;
            }
            if (run.Count > 0) text.Append(_bpe.Decode(run));
            run.Clear();
            text.Append(special);
        }
        if (run.Count > 0) text.Append(_bpe.Decode(run));
        return text.ToString();
    }
}

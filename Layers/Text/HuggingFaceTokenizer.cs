using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using LoraRuntime.IO;
using Microsoft.ML.Tokenizers;
using MlBpeTokenizer = Microsoft.ML.Tokenizers.BpeTokenizer;

namespace LoraRuntime.Layers.Text;

/// <summary>
/// A BPE tokenizer read from Hugging Face's <c>tokenizer.json</c>, on Microsoft.ML.Tokenizers' BPE, in either of the
/// two forms Llama-family checkpoints use. Byte-level (GPT-2, Llama 3, Qwen2, SmolLM2): the pre-tokenizer's regular
/// expression (ByteLevel's GPT-2 pattern, or a Split pattern before a ByteLevel step), each piece looked up whole first
/// when the model says <c>ignore_merges</c> (tiktoken's rule), else merged; an NFC normaliser. SentencePiece-style with
/// byte fallback (Llama 2, Mistral, TinyLlama): spaces become "▁" and one is put before the text (a Prepend and Replace
/// normaliser, or a Metaspace pre-tokenizer), the whole text merged as one sequence over characters, and a character
/// the vocabulary lacks written as its UTF-8 bytes' &lt;0xXX&gt; tokens. In both, the added tokens are matched as
/// themselves first. What it does not compute as Hugging Face does is refused naming the key.
/// </summary>
internal sealed partial class HuggingFaceTokenizer : ITokenizer
{
    /// <summary>The file's name in a model directory.</summary>
    public const string FileName = "tokenizer.json";

    /// <summary>GPT-2's pre-tokenisation pattern, which ByteLevel with use_regex applies.</summary>
    private const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>Llama 3's split (cl100k's; llama.cpp's "llama-bpe").</summary>
    internal const string Llama3Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Qwen2's split (single digits; llama.cpp's "qwen2").</summary>
    internal const string Qwen2Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private readonly MlBpeTokenizer _bpe;
    private readonly IReadOnlyList<string> _merges;
    private readonly Regex _split;
    private readonly Dictionary<string, int> _vocabulary, _special;
    private readonly Dictionary<int, string> _specialById;
    private readonly Regex? _specialPattern;
    private readonly bool _ignoreMerges, _nfc;
    private readonly Metaspace? _metaspace; // the SentencePiece form; null for byte-level
    private readonly string[] _tokenById;
    private readonly int[] _byteIds = new int[256];
    private readonly string _path;
    private int[] _prefix = [], _suffix = []; // the post-processor's special tokens around a single text

    /// <summary>
    /// How the SentencePiece form marks spaces: "▁" for each, and one before each section of text (between added tokens),
    /// or the first only; a Metaspace pre-tokenizer adds none where the section already starts with one.
    /// </summary>
    private sealed record Metaspace(bool PrependFirstSectionOnly, bool UnlessLeading);

    private HuggingFaceTokenizer(Dictionary<string, int> vocabulary, IReadOnlyList<string> merges, Regex split, Dictionary<string, int> special,
        bool ignoreMerges, bool nfc, Metaspace? metaspace, string path)
    {
        _vocabulary = vocabulary;
        _merges = merges;
        _special = special;
        _specialById = special.ToDictionary(kv => kv.Value, kv => kv.Key);
        _split = split;
        _ignoreMerges = ignoreMerges;
        _nfc = nfc;
        _metaspace = metaspace;
        _path = path;
        // The pieces reach the BPE one at a time, already split: its pre-tokenizer takes each whole (its default would
        // split on white space and drop it).
        _bpe = MlBpeTokenizer.Create(new BpeOptions(vocabulary)
        {
            Merges = merges, ByteLevel = metaspace is null, PreTokenizer = new RegexPreTokenizer(WholeText(), null),
        });
        if (metaspace is not null)
            for (int b = 0; b < 256; b++)
                if (!vocabulary.TryGetValue($"<0x{b:X2}>", out _byteIds[b]))
                    throw new InvalidDataException($"{path}: model.byte_fallback is true but the vocabulary has no byte token <0x{b:X2}>");
        if (special.Count > 0)
            _specialPattern = new Regex(string.Join("|", special.Keys.OrderByDescending(k => k.Length).Select(Regex.Escape)), RegexOptions.CultureInvariant);
        VocabularySize = Math.Max(vocabulary.Values.DefaultIfEmpty(-1).Max(), special.Values.DefaultIfEmpty(-1).Max()) + 1;
        _tokenById = new string[VocabularySize];
        foreach (var (token, id) in vocabulary) _tokenById[id] = token;
    }

    /// <inheritdoc/>
    public int VocabularySize { get; }

    /// <summary>The added tokens by content.</summary>
    public IReadOnlyDictionary<string, int> SpecialTokens => _special;

    /// <summary>
    /// Copies the tokenizer.json it was read from, and the tokenizer_config.json beside it when there is one, into
    /// <paramref name="directory"/> (each atomically; nothing to do where they already are).
    /// </summary>
    public void Save(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        Directory.CreateDirectory(directory);
        string from = Path.GetDirectoryName(Path.GetFullPath(_path))!;
        if (string.Equals(from, Path.GetFullPath(directory).TrimEnd(Path.DirectorySeparatorChar), StringComparison.Ordinal)) return;
        foreach (string name in (string[])[FileName, ConfigFileName, GenerationConfigFileName])
        {
            string source = Path.Combine(from, name);
            if (File.Exists(source)) AtomicFile.WriteAllBytes(Path.Combine(directory, name), File.ReadAllBytes(source));
        }
    }

    /// <summary>The special-token settings' file beside tokenizer.json.</summary>
    public const string ConfigFileName = "tokenizer_config.json";

    /// <summary>The generation settings' file of a checkpoint (its eos_token_id, one id or several).</summary>
    public const string GenerationConfigFileName = "generation_config.json";

    /// <inheritdoc/>
    public IReadOnlyList<int> EndOfSequence { get; private set; } = [];

    /// <inheritdoc/>
    public int[] EncodePrompt(string text)
    {
        int[] ids = Encode(text);
        if (_prefix.Length == 0 && _suffix.Length == 0) return ids;
        return [.. _prefix, .. ids, .. _suffix];
    }

    /// <summary>
    /// Reads <paramref name="path"/>, with the end-of-sequence ids of the checkpoint beside it (generation_config.json's
    /// eos_token_id, else tokenizer_config.json's eos_token); an unsupported part is an <see cref="InvalidDataException"/>
    /// naming its key.
    /// </summary>
    public static HuggingFaceTokenizer FromFile(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no tokenizer.json", path);
        HuggingFaceTokenizer tokenizer;
        try
        {
            using (var doc = JsonDocument.Parse(InputFiles.ReadAllBytes(path, InputFiles.TokenizerBytes)))
            {
                tokenizer = Parse(doc.RootElement, path);
                if (doc.RootElement.TryGetProperty("post_processor", out var post))
                    (tokenizer._prefix, tokenizer._suffix) = tokenizer.PostProcessor(post, path, "post_processor");
            }
            tokenizer.EndOfSequence = tokenizer.ReadEndOfSequence(Path.GetDirectoryName(Path.GetFullPath(path))!);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON: {e.Message}", e);
        }
        catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{path}: not a tokenizer this runtime reads: {e.Message}", e);
        }
        return tokenizer;
    }

    /// <summary>
    /// The vocabulary as a GGUF file's tokenizer.ggml.* keys hold it — tokens by id, types (1 normal, 3 control), merges,
    /// the pre-tokenizer's llama.cpp name, the ids put before a prompt — or null where llama.cpp has no name for this
    /// tokenizer's split (a SentencePiece form, or a pattern other than GPT-2's, Llama 3's and Qwen2's). Qwen2's files
    /// normalise to NFC, which llama.cpp's converter leaves out as its tokenizer does (text is taken as given); an NFC
    /// normaliser with another split has no llama.cpp name.
    /// </summary>
    internal (string[] Tokens, int[] Types, IReadOnlyList<string> Merges, string Pre, int[] Prefix)? GgufVocabulary()
    {
        if (_metaspace is not null) return null;
        string pattern = _split.ToString();
        string? pre = pattern == Gpt2Pattern ? "gpt-2" : pattern == Llama3Pattern ? "llama-bpe" : pattern == Qwen2Pattern ? "qwen2" : null;
        if (pre is null || (_nfc && pre != "qwen2")) return null;
        var tokens = new string[VocabularySize];
        var types = new int[VocabularySize];
        for (int i = 0; i < tokens.Length; i++)
        {
            if (_specialById.TryGetValue(i, out var special)) (tokens[i], types[i]) = (special, 3);
            else if (_tokenById[i] is { } token) (tokens[i], types[i]) = (token, 1);
            else (tokens[i], types[i]) = ($"[UNUSED{i}]", 5);
        }
        return (tokens, types, _merges, pre, _prefix);
    }

    /// <summary>
    /// A tokenizer from a tokenizer.json document held in memory (a GGUF file's vocabulary written as one), its
    /// generation ending at <paramref name="endOfSequence"/>; <paramref name="path"/> names the source in messages.
    /// </summary>
    internal static HuggingFaceTokenizer FromJson(byte[] json, string path, IReadOnlyList<int> endOfSequence)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            var tokenizer = Parse(doc.RootElement, path);
            if (doc.RootElement.TryGetProperty("post_processor", out var post))
                (tokenizer._prefix, tokenizer._suffix) = tokenizer.PostProcessor(post, path, "post_processor");
            tokenizer.EndOfSequence = endOfSequence;
            return tokenizer;
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{path}: not a tokenizer this runtime reads: {e.Message}", e);
        }
    }

    /// <summary>
    /// The special tokens a post-processor puts before and after a single text: TemplateProcessing's "single" template
    /// (Llama 2 and 3's begin-of-text), in a Sequence or alone; ByteLevel and none add nothing. Others are refused.
    /// </summary>
    private (int[] Prefix, int[] Suffix) PostProcessor(JsonElement post, string path, string key)
    {
        if (post.ValueKind == JsonValueKind.Null) return ([], []);
        string type = post.GetProperty("type").GetString() ?? "";
        switch (type)
        {
            case "ByteLevel":
                return ([], []);
            case "Sequence":
            {
                var prefix = new List<int>();
                var suffix = new List<int>();
                int i = 0;
                foreach (var step in post.GetProperty("processors").EnumerateArray())
                {
                    var (p, s) = PostProcessor(step, path, $"{key}.processors[{i++}]");
                    if (p.Length + s.Length == 0) continue;
                    if (prefix.Count + suffix.Count > 0) throw Unsupported(path, key, "two templates", "at most one TemplateProcessing");
                    prefix.AddRange(p);
                    suffix.AddRange(s);
                }
                return ([.. prefix], [.. suffix]);
            }
            case "TemplateProcessing":
            {
                var specials = post.GetProperty("special_tokens");
                var before = new List<int>();
                var after = new List<int>();
                bool text = false;
                foreach (var item in post.GetProperty("single").EnumerateArray())
                {
                    if (item.TryGetProperty("Sequence", out _))
                    {
                        if (text) throw Unsupported(path, key + ".single", "two sequences", "one");
                        text = true;
                        continue;
                    }
                    string name = item.GetProperty("SpecialToken").GetProperty("id").GetString() ?? "";
                    if (!specials.TryGetProperty(name, out var special))
                        throw new InvalidDataException($"{path}: {key}.single names '{name}', which {key}.special_tokens lacks");
                    foreach (var id in special.GetProperty("ids").EnumerateArray())
                    {
                        int value = id.GetInt32();
                        if ((uint)value >= (uint)VocabularySize)
                            throw new InvalidDataException($"{path}: {key}.special_tokens.{name}: id {value} is outside the vocabulary [0, {VocabularySize})");
                        (text ? after : before).Add(value);
                    }
                }
                return ([.. before], [.. after]);
            }
            default:
                throw Unsupported(path, key + ".type", type, "TemplateProcessing, ByteLevel, a Sequence of them, or null");
        }
    }

    /// <summary>
    /// generation_config.json's eos_token_id (one id or a list, as Llama 3's end of text and of turn), else
    /// tokenizer_config.json's eos_token (a string or an object with its content) looked up among the tokens; none when
    /// neither file names one.
    /// </summary>
    private int[] ReadEndOfSequence(string directory)
    {
        string generation = Path.Combine(directory, GenerationConfigFileName);
        if (File.Exists(generation))
        {
            using var doc = ParseFile(generation);
            if (doc.RootElement.TryGetProperty("eos_token_id", out var eos) && eos.ValueKind != JsonValueKind.Null)
            {
                var ids = eos.ValueKind == JsonValueKind.Array ? eos.EnumerateArray().Select(e => e.GetInt32()).ToArray() : [eos.GetInt32()];
                foreach (int id in ids)
                    if ((uint)id >= (uint)VocabularySize)
                        throw new InvalidDataException($"{generation}: eos_token_id {id} is outside the vocabulary [0, {VocabularySize})");
                return ids;
            }
        }
        string config = Path.Combine(directory, ConfigFileName);
        if (!File.Exists(config)) return [];
        using (var doc = ParseFile(config))
        {
            if (!doc.RootElement.TryGetProperty("eos_token", out var eos) || eos.ValueKind == JsonValueKind.Null) return [];
            string token = (eos.ValueKind == JsonValueKind.Object ? eos.GetProperty("content").GetString() : eos.GetString()) ?? "";
            if (_special.TryGetValue(token, out int id) || _vocabulary.TryGetValue(token, out id)) return [id];
            throw new InvalidDataException($"{config}: eos_token '{token}' is not a token of {FileName}");
        }
    }

    private static JsonDocument ParseFile(string path)
    {
        try
        {
            return JsonDocument.Parse(InputFiles.ReadAllBytes(path));
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
        bool byteFallback = model.TryGetProperty("byte_fallback", out var fallback) && fallback.ValueKind == JsonValueKind.True;
        foreach (string key in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            if (model.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String && v.GetString()!.Length > 0)
                throw Unsupported(path, "model." + key, v.GetString()!, "null");
        var vocabulary = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in model.GetProperty("vocab").EnumerateObject()) vocabulary[entry.Name] = entry.Value.GetInt32();
        var merges = new List<string>();
        foreach (var merge in model.GetProperty("merges").EnumerateArray())
            merges.Add(merge.ValueKind == JsonValueKind.Array ? $"{merge[0].GetString()} {merge[1].GetString()}" : merge.GetString() ?? "");
        bool ignoreMerges = model.TryGetProperty("ignore_merges", out var ignore) && ignore.ValueKind == JsonValueKind.True;

        var special = new Dictionary<string, int>(StringComparer.Ordinal);
        if (root.TryGetProperty("added_tokens", out var added) && added.ValueKind == JsonValueKind.Array)
            foreach (var token in added.EnumerateArray())
                special[token.GetProperty("content").GetString() ?? ""] = token.GetProperty("id").GetInt32();
        if (byteFallback)
            return new HuggingFaceTokenizer(vocabulary, merges, WholeText(), special, ignoreMerges, nfc: false, SentencePieceForm(root, path), path);
        bool nfc = false;
        if (root.TryGetProperty("normalizer", out var normalizer) && normalizer.ValueKind != JsonValueKind.Null)
        {
            string kind = normalizer.GetProperty("type").GetString() ?? "";
            if (kind != "NFC") throw Unsupported(path, "normalizer.type", kind, "null or NFC");
            nfc = true;
        }
        return new HuggingFaceTokenizer(vocabulary, merges, new Regex(Pattern(root, path), RegexOptions.CultureInvariant), special, ignoreMerges, nfc,
            metaspace: null, path);
    }

    /// <summary>
    /// The SentencePiece form's space handling: a normaliser Sequence [Prepend "▁", Replace " " → "▁"] with no
    /// pre-tokenizer (Llama 2, TinyLlama), or no normaliser and a Metaspace pre-tokenizer without splitting (Mistral).
    /// </summary>
    private static Metaspace SentencePieceForm(JsonElement root, string path)
    {
        bool hasNormalizer = root.TryGetProperty("normalizer", out var normalizer) && normalizer.ValueKind != JsonValueKind.Null;
        bool hasPre = root.TryGetProperty("pre_tokenizer", out var pre) && pre.ValueKind != JsonValueKind.Null;
        if (hasNormalizer && !hasPre)
        {
            var steps = normalizer.GetProperty("type").GetString() == "Sequence" ? normalizer.GetProperty("normalizers").EnumerateArray().ToArray() : [normalizer];
            bool prepend = steps.Length == 2 && steps[0].GetProperty("type").GetString() == "Prepend" && steps[0].GetProperty("prepend").GetString() == "▁";
            bool replace = steps.Length == 2 && steps[1].GetProperty("type").GetString() == "Replace"
                && steps[1].GetProperty("pattern").TryGetProperty("String", out var from) && from.GetString() == " " && steps[1].GetProperty("content").GetString() == "▁";
            if (!prepend || !replace) throw Unsupported(path, "normalizer", normalizer.GetRawText(), "Sequence [Prepend \"▁\", Replace \" \" → \"▁\"] with byte fallback");
            return new Metaspace(PrependFirstSectionOnly: false, UnlessLeading: false);
        }
        if (!hasNormalizer && hasPre && pre.GetProperty("type").GetString() == "Metaspace")
        {
            if (pre.TryGetProperty("replacement", out var r) && r.GetString() != "▁") throw Unsupported(path, "pre_tokenizer.replacement", r.GetString() ?? "", "▁");
            if (pre.TryGetProperty("split", out var split) && split.ValueKind == JsonValueKind.True) throw Unsupported(path, "pre_tokenizer.split", "true", "false");
            string scheme = pre.TryGetProperty("prepend_scheme", out var ps) ? ps.GetString() ?? "always" : "always";
            if (scheme is not ("always" or "first")) throw Unsupported(path, "pre_tokenizer.prepend_scheme", scheme, "always or first");
            return new Metaspace(PrependFirstSectionOnly: scheme == "first", UnlessLeading: true);
        }
        throw Unsupported(path, "normalizer/pre_tokenizer", "this combination", "a Prepend/Replace normaliser or a Metaspace pre-tokenizer with byte fallback");
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
                EncodeOrdinary(text.AsSpan(at, special.Index - at), at == 0, ids);
                ids.Add(_special[special.Value]);
                at = special.Index + special.Length;
            }
        EncodeOrdinary(text.AsSpan(at), at == 0, ids);
        return ids.ToArray();
    }

    /// <summary>A section of text without added tokens, in either form.</summary>
    private void EncodeOrdinary(ReadOnlySpan<char> text, bool first, List<int> ids)
    {
        if (text.IsEmpty) return;
        if (_metaspace is { } metaspace)
        {
            string marked = text.ToString().Replace(' ', '▁');
            bool prepend = (!metaspace.PrependFirstSectionOnly || first) && !(metaspace.UnlessLeading && marked.StartsWith('▁'));
            EncodeSentencePiece(prepend ? "▁" + marked : marked, ids);
            return;
        }
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

    /// <summary>
    /// The SentencePiece form: runs of characters the vocabulary has are merged by the BPE (no merge can involve one it
    /// lacks, so the runs are independent); each other character is its UTF-8 bytes' &lt;0xXX&gt; tokens.
    /// </summary>
    private void EncodeSentencePiece(string text, List<int> ids)
    {
        int run = 0;
        Span<byte> bytes = stackalloc byte[4];
        for (int i = 0; i < text.Length;)
        {
            int width = char.IsSurrogatePair(text, i) ? 2 : 1;
            if (_vocabulary.ContainsKey(text.Substring(i, width)))
            {
                i += width;
                continue;
            }
            if (i > run) ids.AddRange(_bpe.EncodeToIds(text.Substring(run, i - run)));
            int count = Encoding.UTF8.GetBytes(text.AsSpan(i, width), bytes);
            for (int b = 0; b < count; b++) ids.Add(_byteIds[bytes[b]]);
            i += width;
            run = i;
        }
        if (text.Length > run) ids.AddRange(_bpe.EncodeToIds(text[run..]));
    }

    /// <inheritdoc/>
    public string Decode(ReadOnlySpan<int> ids)
    {
        if (_metaspace is not null) return DecodeSentencePiece(ids);
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

    /// <summary>Tokens joined with "▁" as spaces and byte tokens as bytes (UTF-8), the one leading space the encoder put there dropped.</summary>
    private string DecodeSentencePiece(ReadOnlySpan<int> ids)
    {
        foreach (int id in ids)
            if ((uint)id >= (uint)VocabularySize) throw new ArgumentOutOfRangeException(nameof(ids), id, $"ids: id {id} is outside [0, V = {VocabularySize})");
        var bytes = new List<byte>();
        foreach (int id in ids)
        {
            if (_specialById.TryGetValue(id, out string? special))
            {
                bytes.AddRange(Encoding.UTF8.GetBytes(special));
                continue;
            }
            string token = _tokenById[id] ?? "";
            if (token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>'
                && byte.TryParse(token.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out byte value))
                bytes.Add(value);
            else bytes.AddRange(Encoding.UTF8.GetBytes(token.Replace('▁', ' ')));
        }
        string text = Encoding.UTF8.GetString(bytes.ToArray());
        return text.StartsWith(' ') ? text[1..] : text;
    }
}

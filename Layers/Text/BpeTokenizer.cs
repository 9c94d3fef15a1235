using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.RegularExpressions;
using LoraRuntime.IO;
using Microsoft.ML.Tokenizers;
using MlBpeTokenizer = Microsoft.ML.Tokenizers.BpeTokenizer;

namespace LoraRuntime.Layers.Text;

/// <summary>
/// GPT-2's byte-level BPE tokenizer from <c>vocab.json</c> (token → id) and <c>merges.txt</c> (pairs, best first):
/// text is cut by GPT-2's pre-tokenisation pattern, each piece's UTF-8 bytes become characters
/// (<see cref="ByteLevel"/>), and adjacent symbols merge by rank until no ranked pair is left — the merging is
/// Microsoft.ML.Tokenizers' BPE (with its cache); this class reads, checks and writes the files. The literal
/// <see cref="EndOfText"/> in a text is its special token, as Hugging Face's GPT-2 tokenizer has it. Thread-safe.
/// </summary>
internal sealed partial class BpeTokenizer : ITokenizer
{
    /// <summary>The vocabulary's file name.</summary>
    public const string VocabularyFile = "vocab.json";

    /// <summary>The merges' file name.</summary>
    public const string MergesFile = "merges.txt";

    /// <summary>GPT-2's end-of-text token.</summary>
    public const string EndOfText = "<|endoftext|>";

    private readonly Dictionary<string, int> _ids;
    private readonly string[] _tokens;
    private readonly (string Left, string Right)[] _merges;
    private readonly MlBpeTokenizer _bpe;

    /// <summary>
    /// A tokenizer over <paramref name="vocabulary"/> (ids exactly 0..V−1, each once, and a token for every byte) and
    /// <paramref name="merges"/> (rank = position; each pair's concatenation must be a token).
    /// </summary>
    public BpeTokenizer(IReadOnlyDictionary<string, int> vocabulary, IReadOnlyList<(string Left, string Right)> merges)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        ArgumentNullException.ThrowIfNull(merges);
        if (vocabulary.Count == 0) throw new ArgumentException("vocabulary: expected at least the 256 byte tokens; got none", nameof(vocabulary));
        _tokens = new string[vocabulary.Count];
        _ids = new Dictionary<string, int>(vocabulary.Count, StringComparer.Ordinal);
        foreach (var (token, id) in vocabulary)
        {
            if ((uint)id >= (uint)_tokens.Length)
                throw new ArgumentException($"vocabulary: ids must be exactly 0..{_tokens.Length - 1}; '{token}' has id {id}", nameof(vocabulary));
            if (_tokens[id] is { } other)
                throw new ArgumentException($"vocabulary: id {id} is given to both '{other}' and '{token}'", nameof(vocabulary));
            _tokens[id] = token;
            _ids.Add(token, id);
        }
        for (int b = 0; b < 256; b++)
            if (!_ids.ContainsKey(ByteLevel.Char((byte)b).ToString()))
                throw new ArgumentException($"vocabulary: no token for byte 0x{b:X2} ('{ByteLevel.Char((byte)b)}'); byte-level BPE needs all 256", nameof(vocabulary));
        _merges = new (string, string)[merges.Count];
        for (int rank = 0; rank < merges.Count; rank++)
        {
            var (left, right) = merges[rank];
            if (string.IsNullOrEmpty(left) || string.IsNullOrEmpty(right))
                throw new ArgumentException($"merges: pair {rank} has an empty side", nameof(merges));
            if (!_ids.ContainsKey(left + right))
                throw new ArgumentException($"merges: pair {rank} ('{left}', '{right}') makes '{left + right}', which is not in the vocabulary", nameof(merges));
            if (left.Contains(' ') || right.Contains(' '))
                throw new ArgumentException($"merges: pair {rank} ('{left}', '{right}') holds a space, which byte-level tokens never do", nameof(merges));
            _merges[rank] = (left, right);
        }
        EndOfTextId = _ids.TryGetValue(EndOfText, out int eot) ? eot : null;
        EndOfSequence = EndOfTextId is int end ? [end] : [];
        // Pieces reach the BPE already cut by GPT-2's pattern: its pre-tokenizer takes each whole.
        _bpe = MlBpeTokenizer.Create(new BpeOptions(_ids)
        {
            Merges = _merges.Select(m => m.Left + " " + m.Right), ByteLevel = true, PreTokenizer = new RegexPreTokenizer(WholeText(), null),
        });
    }

    /// <inheritdoc/>
    public int VocabularySize => _tokens.Length;

    /// <summary>The id of <see cref="EndOfText"/>, when the vocabulary has it.</summary>
    public int? EndOfTextId { get; }

    /// <summary>GPT-2 ends a sequence with <see cref="EndOfText"/> (its eos_token_id).</summary>
    public IReadOnlyList<int> EndOfSequence { get; }

    /// <summary>The merges, best first.</summary>
    public IReadOnlyList<(string Left, string Right)> Merges => _merges;

    /// <summary>The token (in byte-level characters) of <paramref name="id"/>.</summary>
    public string Token(int id) => (uint)id < (uint)_tokens.Length
        ? _tokens[id]
        : throw new ArgumentOutOfRangeException(nameof(id), $"id {id} is outside [0, {_tokens.Length})");

    /// <summary>Reads vocab.json and merges.txt from <paramref name="directory"/>.</summary>
    public static BpeTokenizer FromDirectory(string directory)
    {
        string vocab = Path.Combine(directory, VocabularyFile), merges = Path.Combine(directory, MergesFile);
        if (!File.Exists(vocab) || !File.Exists(merges))
            throw new FileNotFoundException(
                $"{directory}: a GPT-2 directory needs {VocabularyFile} and {MergesFile} for its tokenizer; missing {(File.Exists(vocab) ? MergesFile : VocabularyFile)}",
                File.Exists(vocab) ? merges : vocab);
        return FromFiles(vocab, merges);
    }

    /// <summary>Reads a vocabulary (a JSON object of token → id) and a merges file (one "left right" pair a line, "#version" lines skipped).</summary>
    public static BpeTokenizer FromFiles(string vocabularyPath, string mergesPath)
    {
        var vocabulary = new Dictionary<string, int>(StringComparer.Ordinal);
        try
        {
            using var doc = JsonDocument.Parse(InputFiles.ReadAllBytes(vocabularyPath, InputFiles.TokenizerBytes));
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{vocabularyPath}: expected a JSON object of token → id; got a {doc.RootElement.ValueKind}");
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out int id))
                    throw new InvalidDataException($"{vocabularyPath}: token '{p.Name}': expected an integer id; got {p.Value.GetRawText()}");
                if (!vocabulary.TryAdd(p.Name, id)) throw new InvalidDataException($"{vocabularyPath}: token '{p.Name}' appears twice");
            }
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{vocabularyPath}: not valid JSON: {e.Message}", e);
        }
        var merges = new List<(string, string)>();
        int lineNumber = 0;
        foreach (string raw in File.ReadLines(mergesPath, Encoding.UTF8))
        {
            lineNumber++;
            string line = raw.TrimEnd('\r');
            if (line.Length == 0 || (line.StartsWith("#version", StringComparison.Ordinal) && merges.Count == 0)) continue;
            int space = line.IndexOf(' ');
            if (space <= 0 || space == line.Length - 1 || line.IndexOf(' ', space + 1) >= 0)
                throw new InvalidDataException($"{mergesPath}: line {lineNumber}: expected two tokens separated by one space; got '{line}'");
            merges.Add((line[..space], line[(space + 1)..]));
        }
        try
        {
            return new BpeTokenizer(vocabulary, merges);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{vocabularyPath}, {mergesPath}: {e.Message}", e);
        }
    }

    /// <summary>Writes vocab.json and merges.txt into <paramref name="directory"/>, each atomically.</summary>
    public void Save(string directory)
    {
        Directory.CreateDirectory(directory);
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            for (int id = 0; id < _tokens.Length; id++) json.WriteNumber(_tokens[id], id);
            json.WriteEndObject();
        }
        AtomicFile.WriteAllBytes(Path.Combine(directory, VocabularyFile), stream.ToArray());
        var merges = new StringBuilder("#version: 0.2\n");
        foreach (var (left, right) in _merges) merges.Append(left).Append(' ').Append(right).Append('\n');
        AtomicFile.WriteAllBytes(Path.Combine(directory, MergesFile), Encoding.UTF8.GetBytes(merges.ToString()));
    }

    /// <summary>Always true: every text has UTF-8 bytes, and every byte a token.</summary>
    public bool CanEncode(string text) => text is not null;

    /// <inheritdoc/>
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 1);
        int start = 0;
        if (EndOfTextId is int eot)
        {
            for (int at; (at = text.IndexOf(EndOfText, start, StringComparison.Ordinal)) >= 0; start = at + EndOfText.Length)
            {
                EncodeOrdinary(text.AsSpan(start, at - start), ids);
                ids.Add(eot);
            }
        }
        EncodeOrdinary(text.AsSpan(start), ids);
        return [.. ids];
    }

    /// <inheritdoc/>
    public string Decode(ReadOnlySpan<int> ids)
    {
        var bytes = new List<byte>(ids.Length * 4);
        Span<byte> utf8 = stackalloc byte[4];
        for (int i = 0; i < ids.Length; i++)
        {
            if ((uint)ids[i] >= (uint)_tokens.Length)
                throw new ArgumentOutOfRangeException(nameof(ids), $"id {ids[i]} at position {i} is outside [0, {_tokens.Length})");
            foreach (char c in _tokens[ids[i]])
            {
                if (ByteLevel.TryGetByte(c, out byte b))
                {
                    bytes.Add(b);
                    continue;
                }
                // A token outside the byte alphabet (an added token) stands for its own UTF-8.
                int n = Encoding.UTF8.GetBytes([c], utf8);
                for (int k = 0; k < n; k++) bytes.Add(utf8[k]);
            }
        }
        // Invalid UTF-8 (a multi-byte character cut between tokens) becomes U+FFFD, as Hugging Face's errors="replace".
        return Encoding.UTF8.GetString([.. bytes]);
    }

    /// <summary>GPT-2's pre-tokenisation: contractions, letters, digits, other symbols (each with one optional leading space), whitespace.</summary>
    [GeneratedRegex(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+", RegexOptions.CultureInvariant)]
    private static partial Regex Pretokenizer();

    [GeneratedRegex(@"[\s\S]+", RegexOptions.CultureInvariant)]
    private static partial Regex WholeText();

    private void EncodeOrdinary(ReadOnlySpan<char> text, List<int> ids)
    {
        foreach (var match in Pretokenizer().EnumerateMatches(text))
            ids.AddRange(_bpe.EncodeToIds(text.Slice(match.Index, match.Length)));
    }
}

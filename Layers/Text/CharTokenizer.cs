using System.Text;

namespace LoraRuntime.Layers.Text;

/// <summary>
/// A character-level tokenizer: the vocabulary is the sorted set of distinct characters of a corpus (as nanoGPT's
/// Shakespeare recipe builds it), so ids are stable for a given corpus and can be saved as a string. A character is a
/// Unicode scalar value (an emoji is one token, never two halves of a surrogate pair); text holding an unpaired
/// surrogate is refused.
/// </summary>
internal sealed class CharTokenizer : ITokenizer
{
    private readonly Dictionary<int, int> _ids;
    private readonly string[] _characters;

    /// <summary>A tokenizer over exactly these characters, in this order (id = position among the characters).</summary>
    public CharTokenizer(string vocabulary)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        if (vocabulary.Length == 0) throw new ArgumentException("the vocabulary must hold at least one character", nameof(vocabulary));
        _ids = [];
        var characters = new List<string>();
        foreach (var rune in Runes(vocabulary, nameof(vocabulary)))
        {
            if (!_ids.TryAdd(rune.Value, characters.Count))
                throw new ArgumentException($"the vocabulary repeats '{Escape(rune)}' at positions {_ids[rune.Value]} and {characters.Count}", nameof(vocabulary));
            characters.Add(rune.ToString());
        }
        _characters = [.. characters];
        Vocabulary = vocabulary;
    }

    /// <summary>The characters in id order.</summary>
    public string Vocabulary { get; }

    /// <summary>Number of ids.</summary>
    public int Size => _characters.Length;

    /// <inheritdoc/>
    public int VocabularySize => Size;

    /// <summary>The tokenizer of a corpus: its distinct characters, sorted by code point.</summary>
    public static CharTokenizer FromCorpus(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var set = new SortedSet<int>();
        foreach (var rune in Runes(text, nameof(text))) set.Add(rune.Value);
        if (set.Count == 0) throw new ArgumentException("the corpus is empty", nameof(text));
        var sb = new StringBuilder(set.Count);
        foreach (int c in set) sb.Append(new Rune(c).ToString());
        return new CharTokenizer(sb.ToString());
    }

    /// <summary>True when every character of <paramref name="text"/> has an id.</summary>
    public bool CanEncode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        for (int i = 0; i < text.Length;)
        {
            if (Rune.DecodeFromUtf16(text.AsSpan(i), out var rune, out int used) != System.Buffers.OperationStatus.Done || !_ids.ContainsKey(rune.Value))
                return false;
            i += used;
        }
        return true;
    }

    /// <summary>Ids of <paramref name="text"/>; a character outside the vocabulary is an error naming it and its position.</summary>
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length);
        foreach (var rune in Runes(text, nameof(text)))
        {
            if (!_ids.TryGetValue(rune.Value, out int id))
                throw new ArgumentException($"character '{Escape(rune)}' at position {ids.Count} is not in the {Size}-character vocabulary", nameof(text));
            ids.Add(id);
        }
        return [.. ids];
    }

    /// <summary>The text of <paramref name="ids"/>; an id outside [0, Size) is an error.</summary>
    public string Decode(ReadOnlySpan<int> ids)
    {
        var sb = new StringBuilder(ids.Length);
        for (int i = 0; i < ids.Length; i++)
        {
            if ((uint)ids[i] >= (uint)Size)
                throw new ArgumentOutOfRangeException(nameof(ids), $"id {ids[i]} at position {i} is outside [0, {Size})");
            sb.Append(_characters[ids[i]]);
        }
        return sb.ToString();
    }

    /// <summary>The characters of <paramref name="text"/>; an unpaired surrogate is an error naming its position.</summary>
    private static IEnumerable<Rune> Runes(string text, string name)
    {
        for (int i = 0; i < text.Length;)
        {
            if (Rune.DecodeFromUtf16(text.AsSpan(i), out var rune, out int used) != System.Buffers.OperationStatus.Done)
                throw new ArgumentException($"{name}: an unpaired UTF-16 surrogate (U+{(int)text[i]:X4}) at index {i} is not a character", name);
            yield return rune;
            i += used;
        }
    }

    private static string Escape(Rune c) => c.Value switch { '\n' => "\\n", '\t' => "\\t", '\r' => "\\r", _ => c.ToString() };
}

using System.Text;

namespace LoraRuntime.Layers.Text;

/// <summary>
/// A character-level tokenizer: the vocabulary is the sorted set of distinct characters of a corpus (as
/// nanoGPT's Shakespeare recipe builds it), so ids are stable for a given corpus and can be saved as a string.
/// </summary>
internal sealed class CharTokenizer : ITokenizer
{
    private readonly Dictionary<char, int> _ids;

    /// <summary>A tokenizer over exactly these characters, in this order (id = position).</summary>
    public CharTokenizer(string vocabulary)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        if (vocabulary.Length == 0) throw new ArgumentException("the vocabulary must hold at least one character", nameof(vocabulary));
        _ids = new Dictionary<char, int>(vocabulary.Length);
        for (int i = 0; i < vocabulary.Length; i++)
            if (!_ids.TryAdd(vocabulary[i], i))
                throw new ArgumentException($"the vocabulary repeats '{Escape(vocabulary[i])}' at positions {_ids[vocabulary[i]]} and {i}", nameof(vocabulary));
        Vocabulary = vocabulary;
    }

    /// <summary>The characters in id order.</summary>
    public string Vocabulary { get; }

    /// <summary>Number of ids.</summary>
    public int Size => Vocabulary.Length;

    /// <inheritdoc/>
    public int VocabularySize => Size;

    /// <summary>The tokenizer of a corpus: its distinct characters, sorted by code point.</summary>
    public static CharTokenizer FromCorpus(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var set = new SortedSet<char>(text);
        if (set.Count == 0) throw new ArgumentException("the corpus is empty", nameof(text));
        var sb = new StringBuilder(set.Count);
        foreach (char c in set) sb.Append(c);
        return new CharTokenizer(sb.ToString());
    }

    /// <summary>True when every character of <paramref name="text"/> has an id.</summary>
    public bool CanEncode(string text) => text.All(_ids.ContainsKey);

    /// <summary>Ids of <paramref name="text"/>; a character outside the vocabulary is an error naming it and its position.</summary>
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new int[text.Length];
        for (int i = 0; i < text.Length; i++)
        {
            if (!_ids.TryGetValue(text[i], out ids[i]))
                throw new ArgumentException(
                    $"character '{Escape(text[i])}' at position {i} is not in the {Size}-character vocabulary", nameof(text));
        }
        return ids;
    }

    /// <summary>The text of <paramref name="ids"/>; an id outside [0, Size) is an error.</summary>
    public string Decode(ReadOnlySpan<int> ids)
    {
        var sb = new StringBuilder(ids.Length);
        for (int i = 0; i < ids.Length; i++)
        {
            if ((uint)ids[i] >= (uint)Size)
                throw new ArgumentOutOfRangeException(nameof(ids), $"id {ids[i]} at position {i} is outside [0, {Size})");
            sb.Append(Vocabulary[ids[i]]);
        }
        return sb.ToString();
    }

    private static string Escape(char c) => c switch { '\n' => "\\n", '\t' => "\\t", '\r' => "\\r", _ => c.ToString() };
}

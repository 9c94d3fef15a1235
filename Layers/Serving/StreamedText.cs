using LoraRuntime.Layers.Text;

namespace LoraRuntime.Layers.Serving;

/// <summary>
/// The text of a streamed answer token by token: each call gives what is now certain — the decoded text so far less a
/// trailing half character (U+FFFD) and less what could still be the start of a stop string — so that the pieces join
/// to the whole answer's text.
/// </summary>
internal sealed class StreamedText(ITokenizer tokenizer, IReadOnlyList<string> stops)
{
    private readonly List<int> _ids = [];
    private readonly int _holdBack = stops.Count == 0 ? 0 : stops.Max(s => s.Length) - 1;
    private int _emitted;

    /// <summary>Characters given so far.</summary>
    public int Emitted => _emitted;

    /// <summary>The new certain text after <paramref name="token"/> (possibly empty).</summary>
    public string Add(int token)
    {
        _ids.Add(token);
        string text = ActiveSequence.DecodeKnown(tokenizer, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_ids));
        int safe = text.Length;
        while (safe > 0 && text[safe - 1] == '\uFFFD') safe--;
        safe -= _holdBack;
        foreach (string stop in stops)
        {
            int at = text.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0) safe = Math.Min(safe, at);
        }
        if (safe <= _emitted) return "";
        string piece = text[_emitted..safe];
        _emitted = safe;
        return piece;
    }

    /// <summary>The rest of <paramref name="whole"/>, the answer's text, after what was given.</summary>
    public string Finish(string whole) => whole.Length > _emitted ? whole[_emitted..] : "";
}

using System.Text;

namespace LoraRuntime.Layers.Text;

/// <summary>
/// Splits a play's text (blocks separated by blank lines, each opening with "NAME:") into one speaker's blocks and the
/// rest: the demo pre-trains on the rest and fine-tunes an adapter on the speaker, a slice the base has never seen.
/// </summary>
internal static class SpeakerSplit
{
    /// <summary>(the speaker's blocks, every other block), each joined by blank lines.</summary>
    public static (string Speaker, string Others) Split(string text, string speaker)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentException.ThrowIfNullOrWhiteSpace(speaker);
        string header = speaker.Trim().ToUpperInvariant() + ":";
        var mine = new StringBuilder();
        var others = new StringBuilder();
        foreach (string block in text.Replace("\r\n", "\n").Split("\n\n"))
        {
            var target = block.StartsWith(header + "\n", StringComparison.Ordinal) ? mine : others;
            if (target.Length > 0) target.Append("\n\n");
            target.Append(block);
        }
        if (mine.Length == 0) throw new ArgumentException($"speaker: no block of the text opens with '{header}'", nameof(speaker));
        return (mine.ToString(), others.ToString());
    }
}

using System.Text;

namespace LoraRuntime.Layers.Text.Jinja;

/// <summary>
/// A template's text after the whitespace rules Hugging Face renders chat templates with, and the way back from a
/// position in it to the line and column of the text the author wrote.
/// </summary>
/// <remarks>
/// The rules are @huggingface/jinja's (transformers.js, and the reference the tests compare with), applied to the
/// whole text before it is split into tokens, string literals included: one trailing newline is dropped; spaces and
/// tabs that begin a line are dropped when <c>{%</c>, <c>{#</c> or <c>{-</c> follows them (lstrip_blocks); the newline
/// right after <c>%}</c>, <c>#}</c> or <c>-}</c> is dropped (trim_blocks); transformers' <c>{% generation %}</c> and
/// <c>{% endgeneration %}</c> markers are removed, honouring their <c>-</c>. Python's Jinja applies lstrip_blocks and
/// trim_blocks to tags only, which differs from this in rare texts (a <c>-}</c> or <c>%}</c> inside a string literal or
/// plain text, a line ending in <c>\r\n</c>).
/// </remarks>
internal sealed class JinjaSource
{
    private readonly int[] _origin;
    private readonly int[] _lineStarts;

    private JinjaSource(string original, string text, int[] origin)
    {
        Original = original;
        Text = text;
        _origin = origin;
        var starts = new List<int> { 0 };
        for (int i = 0; i < original.Length; i++)
            if (original[i] == '\n') starts.Add(i + 1);
        _lineStarts = starts.ToArray();
    }

    /// <summary>The template as written.</summary>
    public string Original { get; }

    /// <summary>The text after the whitespace rules: what the lexer reads.</summary>
    public string Text { get; }

    /// <summary>Applies the whitespace rules to <paramref name="template"/>.</summary>
    public static JinjaSource Preprocess(string template)
    {
        var text = new MappedText(template.Length);
        int length = template.EndsWith('\n') ? template.Length - 1 : template.Length;
        for (int i = 0; i < length; i++) text.Append(template[i], i);

        text = LstripBlocks(text);
        text = TrimBlocks(text);
        text = RemoveGenerationTags(text);
        return new JinjaSource(template, text.ToString(), text.Origins());
    }

    /// <summary>The line and column, in <see cref="Original"/>, of the character at <paramref name="offset"/> in <see cref="Text"/>.</summary>
    public JinjaPosition Locate(int offset)
    {
        int original = offset < _origin.Length ? _origin[offset] : Original.Length;
        int line = Array.BinarySearch(_lineStarts, original);
        if (line < 0) line = ~line - 1;
        return new JinjaPosition(line + 1, original - _lineStarts[line] + 1);
    }

    /// <summary>JavaScript's <c>\s</c> (and <c>String.prototype.trim</c>'s set): the whitespace the reference skips.</summary>
    public static bool IsWhitespace(char c) =>
        c <= ' '
            ? c == ' ' || (c >= '\t' && c <= '\r')
            : c > '\x7f' && (c == '\u00a0' || c == '\u1680' || (c >= '\u2000' && c <= '\u200a') || c == '\u2028' ||
                             c == '\u2029' || c == '\u202f' || c == '\u205f' || c == '\u3000' || c == '\ufeff');

    private static bool IsLineTerminator(char c) => c is '\n' or '\r' or '\u2028' or '\u2029';

    // /^[ \t]*({[#%-])/gm → "$1": a line's leading blanks before a block, comment or "{-" go.
    private static MappedText LstripBlocks(MappedText input)
    {
        var output = new MappedText(input.Length);
        int i = 0;
        while (i < input.Length)
        {
            if (i == 0 || IsLineTerminator(input[i - 1]))
            {
                int j = i;
                while (j < input.Length && input[j] is ' ' or '\t') j++;
                if (j > i && j + 1 < input.Length && input[j] == '{' && input[j + 1] is '#' or '%' or '-') i = j;
            }
            output.Append(input, i);
            i++;
        }
        return output;
    }

    // /([#%-]})\n/g → "$1": the newline after a block or comment goes.
    private static MappedText TrimBlocks(MappedText input)
    {
        var output = new MappedText(input.Length);
        int i = 0;
        while (i < input.Length)
        {
            if (i + 2 < input.Length && input[i] is '#' or '%' or '-' && input[i + 1] == '}' && input[i + 2] == '\n')
            {
                output.Append(input, i);
                output.Append(input, i + 1);
                i += 3;
                continue;
            }
            output.Append(input, i);
            i++;
        }
        return output;
    }

    // /{%(-?)\s*(?:end)?generation\s*(-?)%}(\s*)/gs: the marker goes, with the blanks its "-" strip.
    private static MappedText RemoveGenerationTags(MappedText input)
    {
        var output = new MappedText(input.Length);
        int last = 0, at = 0;
        while (true)
        {
            int open = input.IndexOf("{%", at);
            if (open < 0) break;
            if (!MatchGeneration(input, open, out bool stripBefore, out bool stripAfter, out int afterStart, out int end))
            {
                at = open + 1;
                continue;
            }
            int copyEnd = open;
            while (stripBefore && copyEnd > last && IsWhitespace(input[copyEnd - 1])) copyEnd--;
            for (int k = last; k < copyEnd; k++) output.Append(input, k);
            if (!stripAfter)
                for (int k = afterStart; k < end; k++) output.Append(input, k);
            last = at = end;
        }
        for (int k = last; k < input.Length; k++) output.Append(input, k);
        return output;
    }

    private static bool MatchGeneration(MappedText s, int open, out bool stripBefore, out bool stripAfter, out int afterStart, out int end)
    {
        stripAfter = false;
        afterStart = end = 0;
        int p = open + 2;
        stripBefore = p < s.Length && s[p] == '-';
        if (stripBefore) p++;
        while (p < s.Length && IsWhitespace(s[p])) p++;
        if (s.StartsWith("end", p) && s.StartsWith("generation", p + 3)) p += 3;
        if (!s.StartsWith("generation", p)) return false;
        p += "generation".Length;
        while (p < s.Length && IsWhitespace(s[p])) p++;
        if (p < s.Length && s[p] == '-' && s.StartsWith("%}", p + 1))
        {
            stripAfter = true;
            p++;
        }
        if (!s.StartsWith("%}", p)) return false;
        afterStart = p + 2;
        end = afterStart;
        while (end < s.Length && IsWhitespace(s[end])) end++;
        return true;
    }

    /// <summary>Characters, each with its offset in the original template.</summary>
    private sealed class MappedText(int capacity)
    {
        private readonly StringBuilder _chars = new(capacity);
        private readonly List<int> _origins = new(capacity);

        public int Length => _chars.Length;

        public char this[int index] => _chars[index];

        public void Append(char c, int origin)
        {
            _chars.Append(c);
            _origins.Add(origin);
        }

        public void Append(MappedText from, int index) => Append(from._chars[index], from._origins[index]);

        public bool StartsWith(string value, int at)
        {
            if (at + value.Length > _chars.Length) return false;
            for (int k = 0; k < value.Length; k++)
                if (_chars[at + k] != value[k]) return false;
            return true;
        }

        public int IndexOf(string value, int from)
        {
            for (int i = from; i + value.Length <= _chars.Length; i++)
                if (StartsWith(value, i)) return i;
            return -1;
        }

        public int[] Origins() => _origins.ToArray();

        public override string ToString() => _chars.ToString();
    }
}

using System.Text;

namespace LoraRuntime.Layers.Text.Jinja;

internal enum JinjaTokenKind
{
    Text,
    NumericLiteral,
    StringLiteral,
    Identifier,
    Equals,
    OpenParen,
    CloseParen,
    OpenStatement,
    CloseStatement,
    OpenExpression,
    CloseExpression,
    OpenSquareBracket,
    CloseSquareBracket,
    OpenCurlyBracket,
    CloseCurlyBracket,
    Comma,
    Dot,
    Colon,
    Pipe,
    AdditiveOperator,
    MultiplicativeOperator,
    PowerOperator,
    ComparisonOperator,
    UnaryOperator,
    Comment,
}

/// <summary>A token: its kind, its text (a string literal's value, escapes resolved) and where it starts in <see cref="JinjaSource.Text"/>.</summary>
internal readonly record struct JinjaToken(JinjaTokenKind Kind, string Value, int Offset);

/// <summary>
/// Splits a preprocessed template into text, comments, tags and the tokens inside tags, as @huggingface/jinja does:
/// <c>{%-</c>, <c>{{-</c> and <c>{#-</c> trim the whitespace before them, <c>-%}</c>, <c>-}}</c> and <c>-#}</c> the
/// whitespace after; a <c>-</c> or <c>+</c> that cannot end an operand starts a signed number or is a unary sign.
/// </summary>
internal static class JinjaLexer
{
    private static readonly (string Text, JinjaTokenKind Kind)[] Symbols =
    [
        ("{%", JinjaTokenKind.OpenStatement), ("%}", JinjaTokenKind.CloseStatement),
        ("{{", JinjaTokenKind.OpenExpression), ("}}", JinjaTokenKind.CloseExpression),
        ("(", JinjaTokenKind.OpenParen), (")", JinjaTokenKind.CloseParen),
        ("{", JinjaTokenKind.OpenCurlyBracket), ("}", JinjaTokenKind.CloseCurlyBracket),
        ("[", JinjaTokenKind.OpenSquareBracket), ("]", JinjaTokenKind.CloseSquareBracket),
        (",", JinjaTokenKind.Comma), (".", JinjaTokenKind.Dot), (":", JinjaTokenKind.Colon), ("|", JinjaTokenKind.Pipe),
        ("<=", JinjaTokenKind.ComparisonOperator), (">=", JinjaTokenKind.ComparisonOperator),
        ("==", JinjaTokenKind.ComparisonOperator), ("!=", JinjaTokenKind.ComparisonOperator),
        ("<", JinjaTokenKind.ComparisonOperator), (">", JinjaTokenKind.ComparisonOperator),
        ("+", JinjaTokenKind.AdditiveOperator), ("-", JinjaTokenKind.AdditiveOperator), ("~", JinjaTokenKind.AdditiveOperator),
        ("**", JinjaTokenKind.PowerOperator), ("*", JinjaTokenKind.MultiplicativeOperator),
        ("//", JinjaTokenKind.MultiplicativeOperator), ("/", JinjaTokenKind.MultiplicativeOperator),
        ("%", JinjaTokenKind.MultiplicativeOperator),
        ("=", JinjaTokenKind.Equals),
    ];

    public static List<JinjaToken> Tokenize(JinjaSource source)
    {
        string src = source.Text;
        var tokens = new List<JinjaToken>();
        int pos = 0, curlyDepth = 0;

        JinjaSyntaxException Error(string reason, int at)
        {
            var p = source.Locate(at);
            return new JinjaSyntaxException(reason, p.Line, p.Column);
        }

        // The reference fails when a tag's text ends inside a run of whitespace or digits.
        string ConsumeWhile(Func<char, bool> predicate)
        {
            int start = pos;
            while (pos < src.Length && predicate(src[pos]))
                if (++pos >= src.Length) throw Error("unexpected end of template inside a tag", pos);
            return src[start..pos];
        }

        void StripTrailingWhitespace()
        {
            if (tokens.Count == 0 || tokens[^1].Kind != JinjaTokenKind.Text) return;
            var last = tokens[^1];
            string trimmed = TrimEnd(last.Value);
            if (trimmed.Length == 0) tokens.RemoveAt(tokens.Count - 1);
            else tokens[^1] = last with { Value = trimmed };
        }

        void SkipLeadingWhitespace()
        {
            while (pos < src.Length && JinjaSource.IsWhitespace(src[pos])) pos++;
        }

        while (pos < src.Length)
        {
            JinjaTokenKind? lastKind = tokens.Count > 0 ? tokens[^1].Kind : null;

            // Outside tags: text up to the next "{%", "{{" or "{#".
            if (lastKind is null or JinjaTokenKind.CloseStatement or JinjaTokenKind.CloseExpression or JinjaTokenKind.Comment)
            {
                int end = pos;
                while (true)
                {
                    end = src.IndexOf('{', end);
                    if (end < 0)
                    {
                        end = src.Length;
                        break;
                    }
                    if (end + 1 < src.Length && src[end + 1] is '%' or '{' or '#') break;
                    end++;
                }
                if (end > pos)
                {
                    tokens.Add(new JinjaToken(JinjaTokenKind.Text, src[pos..end], pos));
                    pos = end;
                    continue;
                }
            }

            if (src[pos] == '{' && pos + 1 < src.Length)
            {
                char next = src[pos + 1];
                if (next == '#')
                {
                    int start = pos;
                    pos += 2;
                    bool stripBefore = pos < src.Length && src[pos] == '-';
                    if (stripBefore) pos++;
                    int end = src.IndexOf("#}", pos, StringComparison.Ordinal);
                    if (end < 0) throw Error("a comment {# is not closed by #}", start);
                    string comment = src[pos..end];
                    bool stripAfter = comment.EndsWith('-');
                    if (stripAfter) comment = comment[..^1];
                    if (stripBefore) StripTrailingWhitespace();
                    tokens.Add(new JinjaToken(JinjaTokenKind.Comment, comment, start));
                    pos = end + 2;
                    if (stripAfter) SkipLeadingWhitespace();
                    continue;
                }
                if (pos + 2 < src.Length && src[pos + 2] == '-' && next is '%' or '{')
                {
                    StripTrailingWhitespace();
                    tokens.Add(next == '%'
                        ? new JinjaToken(JinjaTokenKind.OpenStatement, "{%", pos)
                        : new JinjaToken(JinjaTokenKind.OpenExpression, "{{", pos));
                    if (next == '{') curlyDepth = 0;
                    pos += 3;
                    continue;
                }
            }

            ConsumeWhile(JinjaSource.IsWhitespace);
            if (pos >= src.Length) throw Error("unexpected end of template inside a tag", pos);
            char c = src[pos];

            if (c == '-' && pos + 2 < src.Length && src[pos + 2] == '}' && src[pos + 1] is '%' or '}')
            {
                tokens.Add(src[pos + 1] == '%'
                    ? new JinjaToken(JinjaTokenKind.CloseStatement, "%}", pos)
                    : new JinjaToken(JinjaTokenKind.CloseExpression, "}}", pos));
                pos += 3;
                SkipLeadingWhitespace();
                continue;
            }

            if (c is '-' or '+')
            {
                if (lastKind is null or JinjaTokenKind.Text) throw Error($"unexpected '{c}'", pos);
                if (lastKind is not (JinjaTokenKind.Identifier or JinjaTokenKind.NumericLiteral or JinjaTokenKind.StringLiteral
                    or JinjaTokenKind.CloseParen or JinjaTokenKind.CloseSquareBracket))
                {
                    // A sign: with digits after it, part of a number (-1); otherwise a unary operator (-x).
                    int start = pos++;
                    string number = ConsumeWhile(char.IsAsciiDigit);
                    if (number.Length > 0 && pos + 1 < src.Length && src[pos] == '.' && char.IsAsciiDigit(src[pos + 1]))
                    {
                        pos++;
                        number = number + "." + ConsumeWhile(char.IsAsciiDigit);
                    }
                    tokens.Add(new JinjaToken(number.Length > 0 ? JinjaTokenKind.NumericLiteral : JinjaTokenKind.UnaryOperator,
                        c + number, start));
                    continue;
                }
            }

            if (TryMatchSymbol(src, pos, curlyDepth, out var symbol))
            {
                tokens.Add(new JinjaToken(symbol.Kind, symbol.Text, pos));
                if (symbol.Kind == JinjaTokenKind.OpenExpression) curlyDepth = 0;
                else if (symbol.Kind == JinjaTokenKind.OpenCurlyBracket) curlyDepth++;
                else if (symbol.Kind == JinjaTokenKind.CloseCurlyBracket) curlyDepth--;
                pos += symbol.Text.Length;
                continue;
            }

            if (c is '\'' or '"')
            {
                int start = pos++;
                string value = ConsumeString(src, ref pos, c, () => Error("a string literal is not closed", start),
                    (reason, at) => Error(reason, at));
                tokens.Add(new JinjaToken(JinjaTokenKind.StringLiteral, value, start));
                pos++;
                continue;
            }

            if (char.IsAsciiDigit(c))
            {
                int start = pos;
                string number = ConsumeWhile(char.IsAsciiDigit);
                // After a dot (matrix.0.1) the digits are an index, never a fraction.
                if (lastKind != JinjaTokenKind.Dot && pos + 1 < src.Length && src[pos] == '.' && char.IsAsciiDigit(src[pos + 1]))
                {
                    pos++;
                    number = number + "." + ConsumeWhile(char.IsAsciiDigit);
                }
                tokens.Add(new JinjaToken(JinjaTokenKind.NumericLiteral, number, start));
                continue;
            }

            if (IsWordChar(c))
            {
                int start = pos;
                tokens.Add(new JinjaToken(JinjaTokenKind.Identifier, ConsumeWhile(IsWordChar), start));
                continue;
            }

            throw Error($"unexpected character '{c}'", pos);
        }
        return tokens;
    }

    private static bool IsWordChar(char c) => char.IsAsciiLetterOrDigit(c) || c == '_';

    private static bool TryMatchSymbol(string src, int pos, int curlyDepth, out (string Text, JinjaTokenKind Kind) symbol)
    {
        foreach (var candidate in Symbols)
        {
            // Inside a dict literal, "}}" closes two dicts rather than the expression.
            if (candidate.Kind == JinjaTokenKind.CloseExpression && curlyDepth > 0) continue;
            if (string.CompareOrdinal(src, pos, candidate.Text, 0, candidate.Text.Length) == 0)
            {
                symbol = candidate;
                return true;
            }
        }
        symbol = default;
        return false;
    }

    private static string ConsumeString(string src, ref int pos, char quote, Func<JinjaSyntaxException> unclosed,
        Func<string, int, JinjaSyntaxException> error)
    {
        var value = new StringBuilder();
        while (true)
        {
            if (pos >= src.Length) throw unclosed();
            char c = src[pos];
            if (c == quote) return value.ToString();
            pos++;
            if (c != '\\')
            {
                value.Append(c);
                continue;
            }
            if (pos >= src.Length) throw unclosed();
            int escapeAt = pos - 1;
            char escaped = src[pos++];
            switch (escaped)
            {
                case 'n': value.Append('\n'); break;
                case 't': value.Append('\t'); break;
                case 'r': value.Append('\r'); break;
                case 'b': value.Append('\b'); break;
                case 'f': value.Append('\f'); break;
                case 'v': value.Append('\v'); break;
                case '\'' or '"' or '\\': value.Append(escaped); break;
                case 'x' or 'u':
                    int digits = escaped == 'x' ? 2 : 4;
                    if (pos + digits > src.Length || src.AsSpan(pos, digits).ContainsAnyExcept(HexDigits))
                        throw error($"invalid escape \\{escaped} (it takes {digits} hexadecimal digits)", escapeAt);
                    value.Append((char)Convert.ToInt32(src.Substring(pos, digits), 16));
                    pos += digits;
                    break;
                default:
                    throw error($"unknown escape \\{escaped} in a string literal", escapeAt);
            }
        }
    }

    private static readonly System.Buffers.SearchValues<char> HexDigits =
        System.Buffers.SearchValues.Create("0123456789abcdefABCDEF");

    /// <summary>JavaScript's <c>trimEnd</c>.</summary>
    internal static string TrimEnd(string s)
    {
        int end = s.Length;
        while (end > 0 && JinjaSource.IsWhitespace(s[end - 1])) end--;
        return s[..end];
    }
}

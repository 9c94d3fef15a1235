using System.Globalization;
using System.Text;

namespace LoraRuntime.Layers.Text.Jinja;

/// <summary>
/// The <c>tojson</c> filter's text, as @huggingface/jinja writes it (Python's json.dumps with ensure_ascii off):
/// ", " and ": " between items; with an indent of n &gt; 0, each item on its own line indented by n spaces per level
/// and "," between items (empty lists and dicts stay <c>[]</c> and <c>{}</c>); strings escaped as JavaScript's
/// JSON.stringify escapes them (quotes, backslashes, control characters; not "/", non-ASCII or HTML characters);
/// numbers as JavaScript prints them (1.0 is <c>1</c>); undefined as <c>null</c>.
/// </summary>
internal static class JinjaJson
{
    /// <summary>tojson's options: indent (null or 0: one line), ensure_ascii, separators (item, key) and sort_keys.</summary>
    public sealed record Options(int? Indent, bool EnsureAscii, (string Item, string Key)? Separators, bool SortKeys)
    {
        public static readonly Options Default = new(null, false, null, false);
    }

    public static string Serialize(JinjaValue value, Options options, bool undefinedAsNull)
    {
        var output = new StringBuilder();
        Write(output, value, options, depth: 0, undefinedAsNull);
        return output.ToString();
    }

    private static void Write(StringBuilder output, JinjaValue value, Options options, int depth, bool undefinedAsNull)
    {
        switch (value)
        {
            case JinjaNone:
                output.Append("null");
                return;
            case JinjaUndefined:
                output.Append(undefinedAsNull ? "null" : "undefined");
                return;
            case JinjaBoolean b:
                output.Append(b.Value ? "true" : "false");
                return;
            case JinjaNumber n:
                output.Append(double.IsFinite(n.Value) ? FormatNumber(n.Value) : "null");
                return;
            case JinjaString s:
                WriteString(output, s.Value, options.EnsureAscii);
                return;
            case JinjaList { IsTuple: false } list:
                WriteContainer(output, '[', ']', list.Items.Count, options, depth, (i, o) => Write(o, list.Items[i], options, depth + 1, undefinedAsNull), keys: null);
                return;
            case JinjaDict or JinjaNamespace:
            {
                var entries = value is JinjaDict d ? d.Entries : ((JinjaNamespace)value).Entries;
                var pairs = entries.ToList();
                if (options.SortKeys) pairs.Sort((a, b) => CompareKeys(a.Key, b.Key));
                WriteContainer(output, '{', '}', pairs.Count, options, depth, (i, o) => Write(o, pairs[i].Value, options, depth + 1, undefinedAsNull),
                    keys: i => pairs[i].Key);
                return;
            }
            default:
                throw new JinjaException($"{value.Described} cannot be converted to JSON");
        }
    }

    private static void WriteContainer(StringBuilder output, char open, char close, int count, Options options, int depth,
        Action<int, StringBuilder> writeItem, Func<int, string>? keys)
    {
        // The reference treats indent 0 as no indent (Python would still break lines).
        bool indented = options.Indent is > 0;
        string itemSeparator = options.Separators?.Item ?? (indented ? "," : ", ");
        string keySeparator = options.Separators?.Key ?? ": ";
        string unit = indented ? new string(' ', options.Indent!.Value) : "";
        string basePadding = "\n" + string.Concat(Enumerable.Repeat(unit, depth));
        string childPadding = basePadding + unit;

        output.Append(open);
        for (int i = 0; i < count; i++)
        {
            if (i > 0) output.Append(itemSeparator);
            if (indented) output.Append(childPadding);
            if (keys is not null)
            {
                WriteString(output, keys(i), options.EnsureAscii);
                output.Append(keySeparator);
            }
            writeItem(i, output);
        }
        if (indented && count > 0) output.Append(basePadding);
        output.Append(close);
    }

    // The reference sorts keys with localeCompare; this approximates it (case-insensitive first, lower case before
    // upper case on a tie) without culture data.
    private static int CompareKeys(string a, string b)
    {
        int c = string.Compare(a, b, StringComparison.OrdinalIgnoreCase);
        return c != 0 ? c : -string.CompareOrdinal(a, b);
    }

    /// <summary>JSON.stringify of a string, then (ensure_ascii) every character from U+007F up as \uXXXX.</summary>
    public static void WriteString(StringBuilder output, string value, bool ensureAscii)
    {
        output.Append('"');
        for (int i = 0; i < value.Length; i++)
        {
            char c = value[i];
            switch (c)
            {
                case '"': output.Append("\\\""); continue;
                case '\\': output.Append("\\\\"); continue;
                case '\b': output.Append("\\b"); continue;
                case '\f': output.Append("\\f"); continue;
                case '\n': output.Append("\\n"); continue;
                case '\r': output.Append("\\r"); continue;
                case '\t': output.Append("\\t"); continue;
            }
            bool loneSurrogate = char.IsHighSurrogate(c) ? i + 1 >= value.Length || !char.IsLowSurrogate(value[i + 1])
                : char.IsLowSurrogate(c) && (i == 0 || !char.IsHighSurrogate(value[i - 1]));
            if (c < ' ' || loneSurrogate || (ensureAscii && c >= '\x7f'))
                output.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
            else
                output.Append(c);
        }
        output.Append('"');
    }

    /// <summary>
    /// JavaScript's Number.prototype.toString(): the shortest digits that read back as the same double, in plain
    /// notation from 1e-7 up to 1e21 (exclusive) and as d.ddde±x outside it.
    /// </summary>
    public static string FormatNumber(double value)
    {
        if (double.IsNaN(value)) return "NaN";
        if (value == 0) return "0";
        if (value < 0) return "-" + FormatNumber(-value);
        if (double.IsPositiveInfinity(value)) return "Infinity";

        // .NET's "R" is the shortest round-trip form too; take its digits and exponent and lay them out as ECMAScript does.
        string r = value.ToString("R", CultureInfo.InvariantCulture);
        int e = r.IndexOfAny(['E', 'e']);
        string mantissa = e < 0 ? r : r[..e];
        int exponent = e < 0 ? 0 : int.Parse(r[(e + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
        int point = mantissa.IndexOf('.');
        string digits = point < 0 ? mantissa : mantissa.Remove(point, 1);
        int n = (point < 0 ? mantissa.Length : point) + exponent; // the decimal point sits after n digits
        int leading = 0;
        while (leading < digits.Length - 1 && digits[leading] == '0') leading++;
        digits = digits[leading..];
        n -= leading;
        digits = digits.TrimEnd('0');
        int k = digits.Length;

        if (k <= n && n <= 21) return digits + new string('0', n - k);
        if (0 < n && n <= 21) return digits[..n] + "." + digits[n..];
        if (-6 < n && n <= 0) return "0." + new string('0', -n) + digits;
        int shown = n - 1;
        string sign = shown < 0 ? "-" : "+";
        string body = k == 1 ? digits : digits[..1] + "." + digits[1..];
        return body + "e" + sign + Math.Abs(shown).ToString(CultureInfo.InvariantCulture);
    }
}

using System.Globalization;
using System.Text;

namespace LoraRuntime.Layers.Text.Jinja;

/// <summary>
/// The globals a template starts with (<c>namespace</c>, <c>range</c>, <c>raise_exception</c>, <c>strftime_now</c>,
/// the constants), attribute and item access, and the methods strings and dicts have: what @huggingface/jinja offers.
/// String methods follow JavaScript's (<c>strip</c> takes no characters to strip; <c>title</c> and <c>capitalize</c>
/// upper-case only, leaving the rest of each word as it was).
/// </summary>
internal static class JinjaBuiltins
{
    /// <summary>The scope every render starts from.</summary>
    public static JinjaScope CreateGlobals()
    {
        var globals = new JinjaScope(null);
        globals.Set("namespace", new JinjaFunction("namespace", Namespace));
        foreach (var (name, value) in Constants) globals.Set(name, value);
        globals.Set("raise_exception", new JinjaFunction("raise_exception", RaiseException));
        globals.Set("range", new JinjaFunction("range", Range));
        globals.Set("strftime_now", new JinjaFunction("strftime_now", StrftimeNow));
        return globals;
    }

    /// <summary>Names a render's variables may not take, since the globals hold them.</summary>
    public static readonly IReadOnlySet<string> GlobalNames =
        new HashSet<string>(StringComparer.Ordinal) { "namespace", "true", "false", "none", "True", "False", "None", "raise_exception", "range", "strftime_now" };

    private static readonly (string, JinjaValue)[] Constants =
    [
        ("false", JinjaValue.False), ("true", JinjaValue.True), ("none", JinjaValue.None),
        ("True", JinjaValue.True), ("False", JinjaValue.False), ("None", JinjaValue.None),
    ];

    private static JinjaValue Namespace(JinjaArguments arguments)
    {
        if (arguments.Positional.Count > 1) throw new JinjaException($"namespace() takes at most 1 positional argument, got {arguments.Positional.Count}");
        var entries = new OrderedDictionary<string, JinjaValue>(StringComparer.Ordinal);
        if (arguments.Positional.Count == 1)
        {
            switch (arguments.Positional[0])
            {
                case JinjaDict dict:
                    foreach (var (key, value) in dict.Entries) entries[key] = value;
                    break;
                case JinjaList pairs:
                    foreach (var pair in pairs.Items)
                    {
                        List<JinjaValue>? items = pair switch
                        {
                            JinjaList l => l.Items,
                            JinjaString s => CodePoints(s.Value).Select(c => (JinjaValue)new JinjaString(c)).ToList(),
                            _ => null,
                        };
                        if (items is not { Count: 2 }) throw new JinjaException("namespace() takes a dict or a list of [key, value] pairs");
                        if (items[0] is not JinjaString key) throw new JinjaException("namespace() keys must be strings");
                        entries[key.Value] = items[1];
                    }
                    break;
                default:
                    throw new JinjaException($"namespace() cannot read {arguments.Positional[0].Described}");
            }
        }
        foreach (var (key, value) in arguments.Keywords) entries[key] = value;
        return new JinjaNamespace(entries);
    }

    // The reference's message is JavaScript's String() of the first argument.
    private static JinjaValue RaiseException(JinjaArguments arguments)
    {
        string message = arguments.Positional.Count > 0
            ? arguments.Positional[0] is JinjaUndefined ? "" : arguments.Positional[0].ToRawString()
            : arguments.Keywords.Count > 0 ? "[object Map]" : "";
        throw new JinjaRaisedException(message);
    }

    private static JinjaValue Range(JinjaArguments arguments)
    {
        if (arguments.Keywords.Count > 0) throw new JinjaException("range() takes no keyword arguments");
        var numbers = arguments.Positional.Select(a => a is JinjaNumber n ? n.Value : throw new JinjaException($"range() takes numbers, not {a.Described}")).ToList();
        if (numbers.Count is 0 or > 3) throw new JinjaException($"range() takes 1 to 3 arguments, got {numbers.Count}");
        double start = numbers.Count == 1 ? 0 : numbers[0], stop = numbers.Count == 1 ? numbers[0] : numbers[1];
        double step = numbers.Count == 3 ? numbers[2] : 1;
        if (step == 0) throw new JinjaException("range() step must not be zero");
        var items = new List<JinjaValue>();
        for (double i = start; step > 0 ? i < stop : i > stop; i += step) items.Add(JinjaValue.Number(i));
        return new JinjaList(items);
    }

    private static readonly string[] MonthNames = CultureInfo.InvariantCulture.DateTimeFormat.MonthNames;
    private static readonly string[] MonthAbbreviations = CultureInfo.InvariantCulture.DateTimeFormat.AbbreviatedMonthNames;

    /// <summary>The local date and time in the reference's subset of strftime: %Y %m %d %b %B %H %M %%.</summary>
    private static JinjaValue StrftimeNow(JinjaArguments arguments)
    {
        if (arguments.Get(0, null) is not JinjaString format) throw new JinjaException("strftime_now() takes a format string");
        var now = DateTime.Now;
        var output = new StringBuilder();
        string f = format.Value;
        for (int i = 0; i < f.Length; i++)
        {
            if (f[i] != '%' || i + 1 >= f.Length)
            {
                output.Append(f[i]);
                continue;
            }
            string? part = f[i + 1] switch
            {
                'Y' => now.Year.ToString(CultureInfo.InvariantCulture),
                'm' => now.Month.ToString("00", CultureInfo.InvariantCulture),
                'd' => now.Day.ToString("00", CultureInfo.InvariantCulture),
                'b' => MonthAbbreviations[now.Month - 1],
                'B' => MonthNames[now.Month - 1],
                'H' => now.Hour.ToString("00", CultureInfo.InvariantCulture),
                'M' => now.Minute.ToString("00", CultureInfo.InvariantCulture),
                '%' => "%",
                _ => null,
            };
            if (part is null) output.Append('%');
            else
            {
                output.Append(part);
                i++;
            }
        }
        return new JinjaString(output.ToString());
    }

    // ── Attribute and item access ────────────────────────────────────────────────────────────────────────────────

    /// <summary>
    /// <c>target.name</c>, <c>target[key]</c>, <c>target[i]</c> (negative from the end): a dict's entries then its
    /// methods, a namespace's attributes, a list's or string's items and methods; undefined when absent, and for any
    /// name of none, undefined, a number or a boolean.
    /// </summary>
    public static JinjaValue GetMember(JinjaValue target, JinjaValue property)
    {
        switch (target)
        {
            case JinjaDict or JinjaNamespace:
            {
                if (property is not JinjaString key) throw new JinjaException($"{target.Described} is indexed by strings, not by {property.Described}");
                var entries = target is JinjaDict d ? d.Entries : ((JinjaNamespace)target).Entries;
                if (entries.TryGetValue(key.Value, out var value)) return value;
                return target is JinjaDict dict ? DictMethod(dict, key.Value) ?? JinjaValue.Undefined : JinjaValue.Undefined;
            }
            case JinjaList or JinjaString:
                if (property is JinjaNumber { IsInteger: true } index)
                {
                    int length = target is JinjaList l ? l.Items.Count : ((JinjaString)target).Value.Length;
                    double i = index.Value < 0 ? index.Value + length : index.Value;
                    if (i < 0 || i >= length) return JinjaValue.Undefined;
                    return target is JinjaList list ? list.Items[(int)i] : new JinjaString(((JinjaString)target).Value[(int)i].ToString());
                }
                if (property is JinjaString name)
                    return (target is JinjaString s ? StringMethod(s, name.Value)
                        : name.Value == "length" ? new JinjaNumber(((JinjaList)target).Items.Count, true) : null) ?? JinjaValue.Undefined;
                throw new JinjaException($"{target.Described} is indexed by integers or method names, not by {property.Described}");
            default:
                if (property is not JinjaString) throw new JinjaException($"{target.Described} cannot be indexed by {property.Described}");
                return JinjaValue.Undefined;
        }
    }

    private static JinjaValue? StringMethod(JinjaString target, string name)
    {
        string s = target.Value;
        return name switch
        {
            "upper" => Method(name, _ => new JinjaString(Upper(s))),
            "lower" => Method(name, _ => new JinjaString(Lower(s))),
            "strip" => Method(name, _ => new JinjaString(Trim(s))),
            "lstrip" => Method(name, _ => new JinjaString(TrimStart(s))),
            "rstrip" => Method(name, _ => new JinjaString(JinjaLexer.TrimEnd(s))),
            "title" => Method(name, _ => new JinjaString(Title(s))),
            "capitalize" => Method(name, _ => new JinjaString(Capitalize(s))),
            "length" => new JinjaNumber(s.Length, true),
            "startswith" => Method(name, a => JinjaValue.Boolean(MatchAffix(name, a, p => s.StartsWith(p, StringComparison.Ordinal)))),
            "endswith" => Method(name, a => JinjaValue.Boolean(MatchAffix(name, a, p => s.EndsWith(p, StringComparison.Ordinal)))),
            "split" => Method(name, a => Split(s, a)),
            "replace" => Method(name, a => Replace(s, a)),
            _ => null,
        };
    }

    private static JinjaFunction Method(string name, Func<JinjaArguments, JinjaValue> body) => new(name, body);

    private static bool MatchAffix(string method, JinjaArguments arguments, Func<string, bool> matches)
    {
        if (arguments.Keywords.Count > 0) throw new JinjaException($"{method}() takes no keyword arguments");
        if (arguments.Positional.Count == 0) throw new JinjaException($"{method}() takes at least one argument");
        return arguments.Positional[0] switch
        {
            JinjaString prefix => matches(prefix.Value),
            JinjaList options => options.Items.Any(o => o is JinjaString p ? matches(p.Value) : throw new JinjaException($"{method}() takes strings")),
            var other => throw new JinjaException($"{method}() takes a string or a tuple of strings, not {other.Described}"),
        };
    }

    /// <summary>Python's <c>str.split(sep=None, maxsplit=-1)</c>.</summary>
    private static JinjaValue Split(string s, JinjaArguments arguments)
    {
        if (arguments.Keywords.Count > 0) throw new JinjaException("split() takes no keyword arguments");
        var separator = arguments.Get(0, null) ?? JinjaValue.None;
        var maxValue = arguments.Get(1, null) ?? new JinjaNumber(-1, true);
        if (maxValue is not JinjaNumber { IsInteger: true } maxNumber) throw new JinjaException("split()'s maxsplit must be an integer");
        double max = maxNumber.Value;
        var parts = new List<string>();
        if (separator is JinjaNone)
        {
            // Runs of whitespace separate; none at the ends; after maxsplit splits, the rest as it is.
            string text = TrimStart(s);
            int i = 0;
            while (i < text.Length)
            {
                while (i < text.Length && JinjaSource.IsWhitespace(text[i])) i++;
                if (i >= text.Length) break;
                if (max >= 0 && parts.Count >= max)
                {
                    parts.Add(text[i..]);
                    break;
                }
                int start = i;
                while (i < text.Length && !JinjaSource.IsWhitespace(text[i])) i++;
                parts.Add(text[start..i]);
            }
        }
        else if (separator is JinjaString sep)
        {
            if (sep.Value.Length == 0) throw new JinjaException("split() got an empty separator");
            parts.AddRange(s.Split(sep.Value));
            if (max >= 0 && parts.Count > max)
            {
                string rest = string.Join(sep.Value, parts.Skip((int)max));
                parts.RemoveRange((int)max, parts.Count - (int)max);
                parts.Add(rest);
            }
        }
        else throw new JinjaException($"split()'s separator must be a string or none, not {separator.Described}");
        return new JinjaList(parts.Select(p => (JinjaValue)new JinjaString(p)).ToList());
    }

    /// <summary>Python's <c>str.replace(old, new, count=-1)</c>; an empty <c>old</c> goes between code points.</summary>
    public static JinjaValue Replace(string s, JinjaArguments arguments)
    {
        if (arguments.Positional.Count < 2) throw new JinjaException("replace() takes at least two arguments");
        if (arguments.Positional[0] is not JinjaString old || arguments.Positional[1] is not JinjaString replacement)
            throw new JinjaException("replace()'s arguments must be strings");
        var countValue = arguments.Get(2, "count") ?? JinjaValue.None;
        if (countValue is not (JinjaNumber { IsInteger: true } or JinjaNone)) throw new JinjaException("replace()'s count must be an integer or none");
        double remaining = countValue is JinjaNumber c && c.Value >= 0 ? c.Value : double.PositiveInfinity;
        if (remaining == 0) return new JinjaString(s);

        var output = new StringBuilder();
        if (old.Value.Length == 0)
        {
            foreach (string point in CodePoints(s))
            {
                if (remaining-- > 0) output.Append(replacement.Value);
                output.Append(point);
            }
            if (remaining > 0) output.Append(replacement.Value);
            return new JinjaString(output.ToString());
        }
        int at = 0;
        while (remaining > 0)
        {
            int found = s.IndexOf(old.Value, at, StringComparison.Ordinal);
            if (found < 0) break;
            output.Append(s, at, found - at).Append(replacement.Value);
            at = found + old.Value.Length;
            remaining--;
        }
        output.Append(s, at, s.Length - at);
        return new JinjaString(output.ToString());
    }

    private static JinjaValue? DictMethod(JinjaDict dict, string name) => name switch
    {
        "get" => Method(name, a =>
        {
            if (a.Keywords.Count > 0 || a.Positional.Count == 0 || a.Positional[0] is not JinjaString key)
                throw new JinjaException("get() takes a string key and an optional default");
            return dict.Entries.TryGetValue(key.Value, out var value) ? value : a.Get(1, null) ?? JinjaValue.None;
        }),
        "items" => Method(name, _ => Items(dict)),
        "keys" => Method(name, _ => new JinjaList(dict.Entries.Keys.Select(k => (JinjaValue)new JinjaString(k)).ToList())),
        "values" => Method(name, _ => new JinjaList(dict.Entries.Values.ToList())),
        "dictsort" => Method(name, a => DictSort(dict, a)),
        _ => null,
    };

    /// <summary>A dict's methods, for the filters of the same names.</summary>
    public static JinjaFunction? DictMethodFunction(JinjaDict dict, string name) => DictMethod(dict, name) as JinjaFunction;

    public static JinjaList Items(JinjaDict dict) =>
        new(dict.Entries.Select(e => (JinjaValue)new JinjaList([new JinjaString(e.Key), e.Value])).ToList());

    private static JinjaValue DictSort(JinjaDict dict, JinjaArguments arguments)
    {
        var caseSensitive = arguments.Get(0, "case_sensitive") ?? JinjaValue.False;
        var by = arguments.Get(1, "by") ?? new JinjaString("key");
        var reverse = arguments.Get(2, "reverse") ?? JinjaValue.False;
        if (caseSensitive is not JinjaBoolean cs) throw new JinjaException("dictsort's case_sensitive must be a boolean");
        if (by is not JinjaString { Value: "key" or "value" } b) throw new JinjaException("dictsort's by must be 'key' or 'value'");
        if (reverse is not JinjaBoolean r) throw new JinjaException("dictsort's reverse must be a boolean");
        int index = b.Value == "key" ? 0 : 1;
        var items = Items(dict).Items;
        var sorted = items.Order(Comparer<JinjaValue>.Create((x, y) =>
        {
            int c = Compare(((JinjaList)x).Items[index], ((JinjaList)y).Items[index], cs.Value);
            return r.Value ? -c : c;
        })).ToList();
        return new JinjaList(sorted);
    }

    /// <summary>
    /// The reference's ordering for sort and dictsort: numbers and booleans against each other, strings against
    /// strings (lower-cased unless case-sensitive), none with none, undefined with undefined; anything else is an error.
    /// </summary>
    public static int Compare(JinjaValue a, JinjaValue b, bool caseSensitive)
    {
        if (a is JinjaNone && b is JinjaNone) return 0;
        if (a is JinjaNone || b is JinjaNone) throw new JinjaException($"cannot compare {a.Described} with {b.Described}");
        if (a is JinjaUndefined && b is JinjaUndefined) return 0;
        if (a is JinjaUndefined || b is JinjaUndefined) throw new JinjaException($"cannot compare {a.Described} with {b.Described}");
        if (a is JinjaNumber or JinjaBoolean && b is JinjaNumber or JinjaBoolean)
        {
            double x = a is JinjaNumber n ? n.Value : ((JinjaBoolean)a).Value ? 1 : 0;
            double y = b is JinjaNumber m ? m.Value : ((JinjaBoolean)b).Value ? 1 : 0;
            return x < y ? -1 : x > y ? 1 : 0;
        }
        if (a is JinjaString s && b is JinjaString t)
        {
            string p = caseSensitive ? s.Value : Lower(s.Value), q = caseSensitive ? t.Value : Lower(t.Value);
            return Math.Sign(string.CompareOrdinal(p, q));
        }
        throw new JinjaException($"cannot compare {a.Described} with {b.Described}");
    }

    // ── JavaScript's string functions ────────────────────────────────────────────────────────────────────────────

    public static string Trim(string s) => TrimStart(JinjaLexer.TrimEnd(s));

    public static string TrimStart(string s)
    {
        int start = 0;
        while (start < s.Length && JinjaSource.IsWhitespace(s[start])) start++;
        return s[start..];
    }

    public static string Upper(string s) => JinjaCasing.ToUpper(s);

    public static string Lower(string s) => JinjaCasing.ToLower(s);

    /// <summary>/\b\w/g → upper case: each ASCII word character that follows a non-word character.</summary>
    public static string Title(string s)
    {
        var chars = s.ToCharArray();
        for (int i = 0; i < chars.Length; i++)
            if (IsWordChar(chars[i]) && (i == 0 || !IsWordChar(chars[i - 1]))) chars[i] = char.ToUpperInvariant(chars[i]);
        return new string(chars);
    }

    public static string Capitalize(string s) => s.Length == 0 ? s : Upper(s[..1]) + s[1..];

    private static bool IsWordChar(char c) => char.IsAsciiLetterOrDigit(c) || c == '_';

    /// <summary>The string's code points, each as a string (JavaScript's Array.from of a string).</summary>
    public static List<string> CodePoints(string s)
    {
        var points = new List<string>(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            bool pair = char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]);
            points.Add(s.Substring(i, pair ? 2 : 1));
            if (pair) i++;
        }
        return points;
    }
}

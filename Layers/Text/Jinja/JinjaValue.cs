using System.Collections;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace LoraRuntime.Layers.Text.Jinja;

internal enum JinjaKind { Undefined, None, Boolean, Integer, Float, String, List, Dict, Namespace, Function }

/// <summary>
/// A value inside a template. Numbers are JavaScript numbers (doubles) marked integer or float, as in
/// @huggingface/jinja, so that arithmetic, printing and JSON give its results; dicts keep their insertion order.
/// </summary>
internal abstract class JinjaValue
{
    public static readonly JinjaValue Undefined = new JinjaUndefined();
    public static readonly JinjaValue None = new JinjaNone();
    public static readonly JinjaBoolean True = new(true);
    public static readonly JinjaBoolean False = new(false);

    public abstract JinjaKind Kind { get; }

    /// <summary>Python's truthiness as the reference computes it (a namespace is always true).</summary>
    public abstract bool IsTruthy { get; }

    /// <summary>The value's type with its article, for error messages: "a string", "an integer", "none".</summary>
    public string Described => this switch
    {
        JinjaUndefined => "an undefined value",
        JinjaNone => "none",
        JinjaBoolean => "a boolean",
        JinjaNumber { IsInteger: true } => "an integer",
        JinjaNumber => "a float",
        JinjaString => "a string",
        JinjaList { IsTuple: true } => "a tuple",
        JinjaList => "a list",
        JinjaDict => "a dict",
        JinjaNamespace => "a namespace",
        _ => "a function",
    };

    public static JinjaBoolean Boolean(bool value) => value ? True : False;

    /// <summary>
    /// The value's text where a template prints it (<c>{{ x }}</c> prints nothing for none and undefined): "true" and
    /// "false", integers without a fraction, integral floats with ".0", lists and dicts as JSON with ", " and ": "
    /// (undefined inside them as <c>undefined</c>).
    /// </summary>
    public string ToDisplayString() => this switch
    {
        JinjaString s => s.Value,
        JinjaNumber { IsInteger: true } n => JinjaJson.FormatNumber(n.Value),
        JinjaNumber n => FormatFloat(n.Value),
        JinjaBoolean b => b.Value ? "true" : "false",
        JinjaNone => "null",
        JinjaUndefined => "undefined",
        JinjaList or JinjaDict or JinjaNamespace => JinjaJson.Serialize(this, JinjaJson.Options.Default, undefinedAsNull: false),
        _ => throw new JinjaException($"{Described} cannot be converted to text"),
    };

    /// <summary>
    /// JavaScript's <c>String(value)</c> of the underlying value, which <c>~</c>, <c>+</c> with a string and <c>join</c>
    /// use: floats print without ".0", a list joins its items' printed text with ",", a dict is "[object Map]".
    /// </summary>
    public string ToRawString() => this switch
    {
        JinjaString s => s.Value,
        JinjaNumber n => JinjaJson.FormatNumber(n.Value),
        JinjaBoolean b => b.Value ? "true" : "false",
        JinjaNone => "null",
        JinjaUndefined => "undefined",
        JinjaList l => string.Join(",", l.Items.Select(i => i.ToDisplayString())),
        JinjaDict or JinjaNamespace => "[object Map]",
        _ => throw new JinjaException($"{Described} cannot be converted to text"),
    };

    private static string FormatFloat(double value)
    {
        if (value == 0 && double.IsNegative(value)) return "-0.0";
        if (double.IsFinite(value) && Math.Abs(value) < 1e21 && value == Math.Floor(value))
            return value.ToString("F0", CultureInfo.InvariantCulture) + ".0";
        return JinjaJson.FormatNumber(value);
    }

    /// <summary>
    /// Converts what a caller passes to a template: null, strings, booleans, numbers (an integral double is an integer,
    /// as in JavaScript), dictionaries with string keys, sequences, <see cref="JsonElement"/>, <see cref="JsonNode"/>
    /// and <see cref="JinjaValue"/>. Dictionary keys that are array indices come first, in numeric order, the order
    /// JavaScript gives an object's keys.
    /// </summary>
    public static JinjaValue FromObject(object? value) => value switch
    {
        null => None,
        JinjaValue v => v,
        string s => new JinjaString(s),
        bool b => Boolean(b),
        int or long or short or sbyte or byte or ushort or uint => new JinjaNumber(Convert.ToDouble(value, CultureInfo.InvariantCulture), true),
        ulong u => new JinjaNumber(u, true),
        double or float or decimal => Number(Convert.ToDouble(value, CultureInfo.InvariantCulture)),
        JsonElement e => FromJson(e),
        JsonNode n => FromJson(n),
        IEnumerable<KeyValuePair<string, object?>> pairs => FromPairs(pairs.Select(p => (p.Key, p.Value))),
        IDictionary dictionary => FromPairs(dictionary.Cast<DictionaryEntry>().Select(e =>
            (e.Key as string ?? throw new ArgumentException($"a dictionary passed to a template has a key of type {e.Key.GetType().Name}; keys must be strings"), e.Value))),
        IEnumerable sequence => new JinjaList(sequence.Cast<object?>().Select(FromObject).ToList()),
        _ => throw new ArgumentException($"a {value.GetType().Name} cannot be passed to a template (use strings, numbers, booleans, lists, dictionaries or JSON)"),
    };

    /// <summary>A number from a double: an integer when it has no fraction (JavaScript's Number.isInteger).</summary>
    public static JinjaNumber Number(double value) => new(value, double.IsFinite(value) && value == Math.Floor(value));

    private static JinjaValue FromJson(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.Null or JsonValueKind.Undefined => None,
        JsonValueKind.True => True,
        JsonValueKind.False => False,
        JsonValueKind.String => new JinjaString(element.GetString()!),
        JsonValueKind.Number => Number(element.GetDouble()),
        JsonValueKind.Array => new JinjaList(element.EnumerateArray().Select(FromJson).ToList()),
        _ => FromPairs(element.EnumerateObject().Select(p => (p.Name, (object?)p.Value))),
    };

    private static JinjaValue FromJson(JsonNode node) => node switch
    {
        JsonArray array => new JinjaList(array.Select(n => n is null ? None : FromJson(n)).ToList()),
        JsonObject obj => FromPairs(obj.Select(p => (p.Key, (object?)p.Value))),
        _ => FromJsonText(node.ToJsonString()),
    };

    private static JinjaValue FromJsonText(string json)
    {
        using var document = JsonDocument.Parse(json);
        return FromJson(document.RootElement);
    }

    private static JinjaDict FromPairs(IEnumerable<(string Key, object? Value)> pairs)
    {
        var entries = pairs.ToList();
        var dict = new JinjaDict();
        foreach (var (key, value) in entries.Where(e => IsArrayIndex(e.Key)).OrderBy(e => uint.Parse(e.Key, CultureInfo.InvariantCulture)))
            dict.Entries[key] = FromObject(value);
        foreach (var (key, value) in entries.Where(e => !IsArrayIndex(e.Key)))
            dict.Entries[key] = FromObject(value);
        return dict;
    }

    // A canonical decimal below 2³² − 1, which JavaScript orders before an object's other keys.
    private static bool IsArrayIndex(string key) =>
        key.Length is > 0 and <= 10 && key.All(char.IsAsciiDigit) && (key == "0" || key[0] != '0') &&
        ulong.Parse(key, CultureInfo.InvariantCulture) < uint.MaxValue;
}

internal sealed class JinjaUndefined : JinjaValue
{
    public override JinjaKind Kind => JinjaKind.Undefined;
    public override bool IsTruthy => false;
}

internal sealed class JinjaNone : JinjaValue
{
    public override JinjaKind Kind => JinjaKind.None;
    public override bool IsTruthy => false;
}

internal sealed class JinjaBoolean(bool value) : JinjaValue
{
    public bool Value { get; } = value;
    public override JinjaKind Kind => JinjaKind.Boolean;
    public override bool IsTruthy => Value;
}

internal sealed class JinjaNumber(double value, bool isInteger) : JinjaValue
{
    public double Value { get; } = value;
    public bool IsInteger { get; } = isInteger;
    public override JinjaKind Kind => IsInteger ? JinjaKind.Integer : JinjaKind.Float;
    public override bool IsTruthy => Value != 0 && !double.IsNaN(Value);
}

internal sealed class JinjaString(string value) : JinjaValue
{
    public string Value { get; } = value;
    public override JinjaKind Kind => JinjaKind.String;
    public override bool IsTruthy => Value.Length > 0;
}

/// <summary>A list, or a tuple (which the reference refuses in a few places a list is taken: JSON, <c>is iterable</c>, loop unpacking).</summary>
internal sealed class JinjaList(List<JinjaValue> items, bool isTuple = false) : JinjaValue
{
    public List<JinjaValue> Items { get; } = items;
    public bool IsTuple { get; } = isTuple;
    public override JinjaKind Kind => JinjaKind.List;
    public override bool IsTruthy => Items.Count > 0;
}

/// <summary>A dict (a message, a tool, a loop's <c>loop</c>): string keys in insertion order.</summary>
internal sealed class JinjaDict : JinjaValue
{
    public JinjaDict() => Entries = new OrderedDictionary<string, JinjaValue>(StringComparer.Ordinal);

    public JinjaDict(OrderedDictionary<string, JinjaValue> entries) => Entries = entries;

    public OrderedDictionary<string, JinjaValue> Entries { get; }
    public override JinjaKind Kind => JinjaKind.Dict;
    public override bool IsTruthy => Entries.Count > 0;
}

/// <summary><c>namespace(…)</c>: attributes a loop body can assign (<c>{% set ns.x = … %}</c>) and the code after the loop sees.</summary>
internal sealed class JinjaNamespace(OrderedDictionary<string, JinjaValue> entries) : JinjaValue
{
    public OrderedDictionary<string, JinjaValue> Entries { get; } = entries;
    public override JinjaKind Kind => JinjaKind.Namespace;
    public override bool IsTruthy => true;
}

/// <summary>A callable: a global (<c>namespace</c>, <c>range</c>, <c>raise_exception</c>), a method, or a macro.</summary>
internal sealed class JinjaFunction(string name, Func<JinjaArguments, JinjaValue> invoke) : JinjaValue
{
    public string Name { get; } = name;
    public Func<JinjaArguments, JinjaValue> Invoke { get; } = invoke;
    public override JinjaKind Kind => JinjaKind.Function;
    public override bool IsTruthy => true;
}

/// <summary>The arguments of a call: positional ones, then keyword ones in the order written.</summary>
internal sealed class JinjaArguments(List<JinjaValue> positional, OrderedDictionary<string, JinjaValue> keywords)
{
    public static readonly JinjaArguments Empty = new([], new OrderedDictionary<string, JinjaValue>());

    public List<JinjaValue> Positional { get; } = positional;
    public OrderedDictionary<string, JinjaValue> Keywords { get; } = keywords;

    /// <summary>The argument at <paramref name="index"/>, else the keyword <paramref name="name"/>, else null.</summary>
    public JinjaValue? Get(int index, string? name) =>
        index < Positional.Count ? Positional[index] : name is not null && Keywords.TryGetValue(name, out var v) ? v : null;
}

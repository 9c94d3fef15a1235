using System.Globalization;

namespace LoraRuntime.Layers.Text.Jinja;

/// <summary>
/// Filters (<c>x | name</c>, <c>x | name(arguments)</c>) and tests (<c>x is name</c>) as @huggingface/jinja
/// implements them: which filters exist depends on the operand's type (<c>length</c> of undefined is an error,
/// <c>first</c> of a string too), and a few take arguments only in their call form.
/// </summary>
internal static class JinjaFilters
{
    public static JinjaValue Apply(JinjaInterpreter interpreter, JinjaValue operand, string name, JinjaArgument[]? arguments, JinjaScope scope)
    {
        if (arguments is null) return ApplyBare(operand, name);
        switch (name)
        {
            case "tojson":
                return new JinjaString(JinjaJson.Serialize(operand, JsonOptions(interpreter.EvaluateArguments(arguments, scope)), undefinedAsNull: true));
            case "join":
                return Join(operand, interpreter.EvaluateArguments(arguments, scope));
            case "int" or "float":
            {
                var args = interpreter.EvaluateArguments(arguments, scope);
                var fallback = args.Get(0, "default") ?? (name == "int" ? new JinjaNumber(0, true) : new JinjaNumber(0, false));
                return ToNumber(operand, name, fallback);
            }
            case "default":
            {
                var args = interpreter.EvaluateArguments(arguments, scope);
                var fallback = args.Positional.Count > 0 ? args.Positional[0] : new JinjaString("");
                if ((args.Get(1, "boolean") ?? JinjaValue.False) is not JinjaBoolean boolean) throw new JinjaException("default()'s boolean must be true or false");
                return operand is JinjaUndefined || (boolean.Value && !operand.IsTruthy) ? fallback : operand;
            }
        }
        switch (operand)
        {
            case JinjaList list:
                return name switch
                {
                    "sort" => Sort(list, interpreter.EvaluateArguments(arguments, scope)),
                    "selectattr" or "rejectattr" => SelectAttribute(list, name, arguments),
                    "map" => Map(list, interpreter.EvaluateArguments(arguments, scope)),
                    _ => throw Unknown(name, operand),
                };
            case JinjaString s:
                return name switch
                {
                    "indent" => Indent(s.Value, interpreter.EvaluateArguments(arguments, scope)),
                    "replace" => JinjaBuiltins.Replace(s.Value, interpreter.EvaluateArguments(arguments, scope)),
                    _ => throw Unknown(name, operand),
                };
            case JinjaDict dict:
                return JinjaBuiltins.DictMethodFunction(dict, name)?.Invoke(interpreter.EvaluateArguments(arguments, scope)) ?? throw Unknown(name, operand);
            default:
                throw Unknown(name, operand);
        }
    }

    private static JinjaValue ApplyBare(JinjaValue operand, string name)
    {
        if (name == "safe") return operand;
        if (name == "tojson") return new JinjaString(JinjaJson.Serialize(operand, JinjaJson.Options.Default, undefinedAsNull: true));
        switch (operand)
        {
            case JinjaList list:
                return name switch
                {
                    "list" => list,
                    "first" => list.Items.Count > 0 ? list.Items[0] : JinjaValue.Undefined,
                    "last" => list.Items.Count > 0 ? list.Items[^1] : JinjaValue.Undefined,
                    "length" => new JinjaNumber(list.Items.Count, true),
                    "reverse" => new JinjaList(Enumerable.Reverse(list.Items).ToList()),
                    "sort" => new JinjaList(list.Items.Order(Comparer<JinjaValue>.Create((a, b) => JinjaBuiltins.Compare(a, b, false))).ToList()),
                    "join" => new JinjaString(string.Concat(list.Items.Select(RawItem))),
                    "string" => new JinjaString(JinjaJson.Serialize(list, JinjaJson.Options.Default, undefinedAsNull: false)),
                    "unique" => Unique(list),
                    _ => throw Unknown(name, operand),
                };
            case JinjaString s:
                return name switch
                {
                    "length" => new JinjaNumber(s.Value.Length, true),
                    "upper" => new JinjaString(JinjaBuiltins.Upper(s.Value)),
                    "lower" => new JinjaString(JinjaBuiltins.Lower(s.Value)),
                    "title" => new JinjaString(JinjaBuiltins.Title(s.Value)),
                    "capitalize" => new JinjaString(JinjaBuiltins.Capitalize(s.Value)),
                    "trim" => new JinjaString(JinjaBuiltins.Trim(s.Value)),
                    "indent" => new JinjaString(string.Join('\n', s.Value.Split('\n').Select((line, i) => i == 0 || line.Length == 0 ? line : "    " + line))),
                    "join" or "string" => s,
                    "int" or "float" => ToNumber(s, name, name == "int" ? new JinjaNumber(0, true) : new JinjaNumber(0, false)),
                    _ => throw Unknown(name, operand),
                };
            case JinjaNumber n:
                return name switch
                {
                    "abs" => new JinjaNumber(Math.Abs(n.Value), n.IsInteger),
                    "int" or "float" => ToNumber(n, name, JinjaValue.None),
                    "string" => new JinjaString(n.ToDisplayString()),
                    _ => throw Unknown(name, operand),
                };
            case JinjaDict dict:
                return name switch
                {
                    "items" => JinjaBuiltins.Items(dict),
                    "length" => new JinjaNumber(dict.Entries.Count, true),
                    _ => JinjaBuiltins.DictMethodFunction(dict, name)?.Invoke(JinjaArguments.Empty) ?? throw Unknown(name, operand),
                };
            case JinjaBoolean b:
                return name switch
                {
                    "bool" => b,
                    "int" or "float" => ToNumber(b, name, JinjaValue.None),
                    "string" => new JinjaString(b.Value ? "true" : "false"),
                    _ => throw Unknown(name, operand),
                };
            default:
                throw Unknown(name, operand);
        }
    }

    private static JinjaException Unknown(string name, JinjaValue operand) =>
        new($"the filter '{name}' does not apply to {operand.Described} (or is not supported)");

    private static string RawItem(JinjaValue item) => item is JinjaNone or JinjaUndefined ? "" : item.ToRawString();

    private static JinjaJson.Options JsonOptions(JinjaArguments arguments)
    {
        var indent = arguments.Keywords.GetValueOrDefault("indent") ?? JinjaValue.None;
        var ensureAscii = arguments.Keywords.GetValueOrDefault("ensure_ascii") ?? JinjaValue.False;
        var sortKeys = arguments.Keywords.GetValueOrDefault("sort_keys") ?? JinjaValue.False;
        var separators = arguments.Keywords.GetValueOrDefault("separators") ?? JinjaValue.None;
        if (indent is not (JinjaNumber { IsInteger: true } or JinjaNone)) throw new JinjaException("tojson's indent must be an integer");
        if (ensureAscii is not JinjaBoolean ascii) throw new JinjaException("tojson's ensure_ascii must be true or false");
        if (sortKeys is not JinjaBoolean sort) throw new JinjaException("tojson's sort_keys must be true or false");
        (string, string)? pair = null;
        if (separators is JinjaList { Items: [JinjaString item, JinjaString key] }) pair = (item.Value, key.Value);
        else if (separators is not JinjaNone) throw new JinjaException("tojson's separators must be two strings (item, key)");
        int? spaces = indent is JinjaNumber n ? (int)Math.Clamp(n.Value, int.MinValue, int.MaxValue) : null;
        return new JinjaJson.Options(spaces, ascii.Value, pair, sort.Value);
    }

    private static JinjaValue Join(JinjaValue operand, JinjaArguments arguments)
    {
        IEnumerable<string> parts = operand switch
        {
            JinjaString s => JinjaBuiltins.CodePoints(s.Value),
            JinjaList list => list.Items.Select(RawItem),
            _ => throw Unknown("join", operand),
        };
        if ((arguments.Get(0, "separator") ?? new JinjaString("")) is not JinjaString separator) throw new JinjaException("join's separator must be a string");
        return new JinjaString(string.Join(separator.Value, parts));
    }

    private static JinjaValue ToNumber(JinjaValue operand, string name, JinjaValue fallback)
    {
        bool toInt = name == "int";
        switch (operand)
        {
            case JinjaString s:
                double parsed = toInt ? ParseInt(s.Value) : ParseFloat(s.Value);
                return double.IsNaN(parsed) ? fallback : new JinjaNumber(parsed, toInt);
            case JinjaNumber n:
                return toInt ? new JinjaNumber(Math.Truncate(n.Value) + 0, true) : new JinjaNumber(n.Value, false);
            case JinjaBoolean b:
                return new JinjaNumber(b.Value ? 1 : 0, toInt);
            default:
                throw Unknown(name, operand);
        }
    }

    /// <summary>JavaScript's parseInt(s, 10): optional blanks and sign, then the leading decimal digits; NaN without any.</summary>
    private static double ParseInt(string s)
    {
        string t = JinjaBuiltins.TrimStart(s);
        int i = 0;
        bool negative = false;
        if (i < t.Length && t[i] is '+' or '-') negative = t[i++] == '-';
        int start = i;
        while (i < t.Length && char.IsAsciiDigit(t[i])) i++;
        if (i == start) return double.NaN;
        double value = double.Parse(t.AsSpan(start, i - start), NumberStyles.None, CultureInfo.InvariantCulture);
        return negative ? -value : value;
    }

    /// <summary>JavaScript's parseFloat: the longest leading decimal literal (or Infinity); NaN without one.</summary>
    private static double ParseFloat(string s)
    {
        string t = JinjaBuiltins.TrimStart(s);
        int i = 0;
        if (i < t.Length && t[i] is '+' or '-') i++;
        if (string.CompareOrdinal(t, i, "Infinity", 0, 8) == 0)
            return t[0] == '-' ? double.NegativeInfinity : double.PositiveInfinity;
        int digits = 0;
        while (i < t.Length && char.IsAsciiDigit(t[i])) { i++; digits++; }
        if (i < t.Length && t[i] == '.')
        {
            int afterPoint = i + 1;
            int fraction = 0;
            while (afterPoint < t.Length && char.IsAsciiDigit(t[afterPoint])) { afterPoint++; fraction++; }
            if (digits + fraction > 0)
            {
                i = afterPoint;
                digits += fraction;
            }
        }
        if (digits == 0) return double.NaN;
        if (i < t.Length && t[i] is 'e' or 'E')
        {
            int e = i + 1;
            if (e < t.Length && t[e] is '+' or '-') e++;
            int expStart = e;
            while (e < t.Length && char.IsAsciiDigit(t[e])) e++;
            if (e > expStart) i = e;
        }
        string literal = t[..i];
        if (literal.EndsWith('.')) literal = literal[..^1];
        return double.Parse(literal, NumberStyles.Float, CultureInfo.InvariantCulture);
    }

    private static JinjaList Unique(JinjaList list)
    {
        var output = new List<JinjaValue>();
        foreach (var item in list.Items)
            if (!output.Any(seen => JinjaInterpreter.StrictEquals(seen, item) || (seen is JinjaNumber a && item is JinjaNumber b && double.IsNaN(a.Value) && double.IsNaN(b.Value))))
                output.Add(item);
        return new JinjaList(output);
    }

    private static JinjaValue Sort(JinjaList list, JinjaArguments arguments)
    {
        if ((arguments.Get(0, "reverse") ?? JinjaValue.False) is not JinjaBoolean reverse) throw new JinjaException("sort's reverse must be true or false");
        if ((arguments.Get(1, "case_sensitive") ?? JinjaValue.False) is not JinjaBoolean caseSensitive) throw new JinjaException("sort's case_sensitive must be true or false");
        var attribute = arguments.Get(2, "attribute") ?? JinjaValue.None;
        string? path = attribute switch
        {
            JinjaString s => s.Value,
            JinjaNumber { IsInteger: true } n => JinjaJson.FormatNumber(n.Value),
            JinjaNone => null,
            _ => throw new JinjaException("sort's attribute must be a string, an integer or none"),
        };
        JinjaValue Key(JinjaValue item) => path is null ? item : AttributeAt(item, path);
        return new JinjaList(list.Items.Order(Comparer<JinjaValue>.Create((a, b) =>
        {
            int c = JinjaBuiltins.Compare(Key(a), Key(b), caseSensitive.Value);
            return reverse.Value ? -c : c;
        })).ToList());
    }

    /// <summary>A dotted path into dicts, namespaces and lists ("details.priority", "items.0"); undefined where it stops.</summary>
    private static JinjaValue AttributeAt(JinjaValue item, string path)
    {
        var value = item;
        foreach (string part in path.Split('.'))
        {
            switch (value)
            {
                case JinjaDict d:
                    value = d.Entries.GetValueOrDefault(part) ?? JinjaValue.Undefined;
                    break;
                case JinjaNamespace ns:
                    value = ns.Entries.GetValueOrDefault(part) ?? JinjaValue.Undefined;
                    break;
                case JinjaList l:
                    double index = ParseInt(part);
                    if (double.IsNaN(index) || index < 0 || index >= l.Items.Count) return JinjaValue.Undefined;
                    value = l.Items[(int)index];
                    break;
                default:
                    return JinjaValue.Undefined;
            }
        }
        return value;
    }

    private static JinjaValue SelectAttribute(JinjaList list, string name, JinjaArgument[] arguments)
    {
        if (list.Items.Any(i => i is not (JinjaDict or JinjaNamespace))) throw new JinjaException($"{name} applies to a list of dicts");
        if (arguments.Length == 0 || arguments.Any(a => a is not { Kind: JinjaArgumentKind.Positional, Value: LiteralExpression { Value: JinjaString } }))
            throw new JinjaException($"{name}'s arguments must be string literals (attribute, then optionally a test and its value)");
        var values = arguments.Select(a => ((JinjaString)((LiteralExpression)a.Value).Value).Value).ToArray();
        string attribute = values[0];
        string? test = values.Length > 1 ? values[1] : null;
        JinjaValue? argument = values.Length > 2 ? new JinjaString(values[2]) : null;
        bool select = name == "selectattr";
        var kept = list.Items.Where(item =>
        {
            var entries = item is JinjaDict d ? d.Entries : ((JinjaNamespace)item).Entries;
            bool passes = entries.TryGetValue(attribute, out var value) && (test is null ? value.IsTruthy : Test(test, value, argument));
            return passes == select;
        }).ToList();
        return new JinjaList(kept);
    }

    private static JinjaValue Map(JinjaList list, JinjaArguments arguments)
    {
        if (!arguments.Keywords.TryGetValue("attribute", out var attribute))
            throw new JinjaException("map is supported with attribute= only");
        if (attribute is not JinjaString path) throw new JinjaException("map's attribute must be a string");
        var fallback = arguments.Keywords.GetValueOrDefault("default");
        return new JinjaList(list.Items.Select(item =>
        {
            if (item is not (JinjaDict or JinjaNamespace)) throw new JinjaException("map(attribute=…) applies to a list of dicts");
            var value = AttributeAt(item, path.Value);
            return value is JinjaUndefined ? fallback ?? JinjaValue.Undefined : value;
        }).ToList());
    }

    private static JinjaValue Indent(string text, JinjaArguments arguments)
    {
        var width = arguments.Get(0, "width") ?? new JinjaNumber(4, true);
        bool first = (arguments.Get(1, "first") ?? JinjaValue.False).IsTruthy;
        bool blank = (arguments.Get(2, "blank") ?? JinjaValue.False).IsTruthy;
        string indent = width switch
        {
            JinjaString s => s.Value,
            JinjaNumber { IsInteger: true } n => new string(' ', (int)Math.Clamp(n.Value, 0, 1 << 20)),
            _ => throw new JinjaException("indent's width must be an integer or a string"),
        };
        return new JinjaString(string.Join('\n', text.Split('\n').Select((line, i) =>
            (!first && i == 0) || (!blank && line.Length == 0) ? line : indent + line)));
    }

    /// <summary><c>value is name</c> (the equalto/eq tests compare with <paramref name="argument"/>).</summary>
    public static bool Test(string name, JinjaValue value, JinjaValue? argument = null) => name switch
    {
        "boolean" => value is JinjaBoolean,
        "callable" => value is JinjaFunction,
        "odd" or "even" => value is JinjaNumber { IsInteger: true } n
            ? (n.Value % 2 != 0) == (name == "odd")
            : throw new JinjaException($"the test '{name}' applies to an integer, not {value.Described}"),
        "false" => value is JinjaBoolean { Value: false },
        "true" => value is JinjaBoolean { Value: true },
        "none" => value is JinjaNone,
        "string" => value is JinjaString,
        "number" => value is JinjaNumber,
        "integer" => value is JinjaNumber { IsInteger: true },
        "iterable" => value is JinjaList { IsTuple: false } or JinjaString,
        "mapping" => value is JinjaDict,
        "sequence" => value is JinjaList or JinjaDict or JinjaString,
        "lower" => value is JinjaString s && s.Value == JinjaBuiltins.Lower(s.Value),
        "upper" => value is JinjaString u && u.Value == JinjaBuiltins.Upper(u.Value),
        "defined" => value is not JinjaUndefined,
        "undefined" => value is JinjaUndefined,
        "equalto" or "eq" => argument is not null
            ? JinjaInterpreter.StrictEquals(value, argument)
            : throw new JinjaException($"the test '{name}' needs a value to compare with"),
        _ => throw new JinjaException($"unknown test '{name}'"),
    };
}

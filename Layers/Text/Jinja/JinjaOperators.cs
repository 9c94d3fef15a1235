using System.Globalization;

namespace LoraRuntime.Layers.Text.Jinja;

/// <summary>
/// Binary operators as @huggingface/jinja evaluates them, which is JavaScript's semantics over the values more than
/// Python's: <c>==</c> is JavaScript's loose equality (lists and dicts by identity), <c>%</c> keeps the dividend's
/// sign, <c>&lt;</c> and its kin compare numbers only, <c>+</c> with a string operand concatenates both operands'
/// text, <c>~</c> concatenates anything but none (undefined as ""), and an undefined operand is an error elsewhere.
/// </summary>
internal sealed partial class JinjaInterpreter
{
    private JinjaValue EvaluateBinary(BinaryExpression node, JinjaScope scope)
    {
        string op = node.Operator;
        var left = Evaluate(node.Left, scope);
        if (op == "and") return left.IsTruthy ? Evaluate(node.Right, scope) : left;
        if (op == "or") return left.IsTruthy ? left : Evaluate(node.Right, scope);

        var right = Evaluate(node.Right, scope);
        if (op == "==") return JinjaValue.Boolean(LooseEquals(left, right));
        if (op == "!=") return JinjaValue.Boolean(!LooseEquals(left, right));

        if (left is JinjaNumber a && right is JinjaNumber b && op is not ("~" or "**"))
        {
            bool isFloat = !a.IsInteger || !b.IsInteger;
            switch (op)
            {
                case "+": return new JinjaNumber(a.Value + b.Value, !isFloat);
                case "-": return new JinjaNumber(a.Value - b.Value, !isFloat);
                case "*": return new JinjaNumber(a.Value * b.Value, !isFloat);
                case "/": return new JinjaNumber(a.Value / b.Value, false);
                case "//": return new JinjaNumber(Math.Floor(a.Value / b.Value), !isFloat);
                case "%": return new JinjaNumber(a.Value % b.Value, !isFloat);
                case "<": return JinjaValue.Boolean(a.Value < b.Value);
                case ">": return JinjaValue.Boolean(a.Value > b.Value);
                case ">=": return JinjaValue.Boolean(a.Value >= b.Value);
                case "<=": return JinjaValue.Boolean(a.Value <= b.Value);
            }
        }
        else if (left is JinjaUndefined || right is JinjaUndefined)
        {
            if (right is JinjaUndefined && op is "in" or "not in") return JinjaValue.Boolean(op == "not in");
            if (op == "~" && left is not JinjaNone && right is not JinjaNone)
                return new JinjaString((left is JinjaUndefined ? "" : left.ToRawString()) + (right is JinjaUndefined ? "" : right.ToRawString()));
            throw new JinjaException($"'{op}' does not apply to an undefined value");
        }
        else if (left is JinjaNone || right is JinjaNone)
        {
            throw new JinjaException($"'{op}' does not apply to none");
        }
        else if (op == "~")
        {
            return new JinjaString(left.ToRawString() + right.ToRawString());
        }
        else if (op == "**" && NumericLike(left) is { } x && NumericLike(right) is { } y)
        {
            if (x == 0 && y < 0) throw new JinjaException("0 cannot be raised to a negative power");
            double result = Math.Pow(x, y);
            if (!double.IsFinite(result)) throw new JinjaException("the power is not a finite real number");
            bool isFloat = left is JinjaNumber { IsInteger: false } || right is JinjaNumber { IsInteger: false } || y < 0;
            return new JinjaNumber(result, !isFloat);
        }
        else if (left is JinjaList leftList && right is JinjaList rightList)
        {
            if (op == "+") return new JinjaList([.. leftList.Items, .. rightList.Items]);
        }
        else if (right is JinjaList container)
        {
            if (op is "in" or "not in") return JinjaValue.Boolean(container.Items.Any(item => StrictEquals(item, left)) == (op == "in"));
        }

        if ((left is JinjaString || right is JinjaString) && op == "+") return new JinjaString(left.ToRawString() + right.ToRawString());
        if (left is JinjaString needle && right is JinjaString haystack && op is "in" or "not in")
            return JinjaValue.Boolean(haystack.Value.Contains(needle.Value, StringComparison.Ordinal) == (op == "in"));
        if (left is JinjaString key && right is JinjaDict dict && op is "in" or "not in")
            return JinjaValue.Boolean(dict.Entries.ContainsKey(key.Value) == (op == "in"));
        throw new JinjaException($"'{op}' does not apply to {left.Described} and {right.Described}");
    }

    private static double? NumericLike(JinjaValue value) => value switch
    {
        JinjaNumber n => n.Value,
        JinjaBoolean b => b.Value ? 1 : 0,
        _ => null,
    };

    /// <summary>JavaScript's <c>===</c> on the underlying values (what <c>in</c> a list and the equalto test use).</summary>
    public static bool StrictEquals(JinjaValue a, JinjaValue b) => (a, b) switch
    {
        (JinjaNumber x, JinjaNumber y) => x.Value == y.Value,
        (JinjaString x, JinjaString y) => x.Value == y.Value,
        (JinjaBoolean x, JinjaBoolean y) => x.Value == y.Value,
        (JinjaNone, JinjaNone) or (JinjaUndefined, JinjaUndefined) => true,
        _ => ReferenceEquals(a, b),
    };

    /// <summary>JavaScript's <c>==</c> on the underlying values: numbers, strings and booleans convert; none equals undefined.</summary>
    public static bool LooseEquals(JinjaValue a, JinjaValue b)
    {
        while (true)
        {
            switch (a, b)
            {
                case (JinjaNone or JinjaUndefined, JinjaNone or JinjaUndefined):
                    return true;
                case (JinjaNone or JinjaUndefined, _) or (_, JinjaNone or JinjaUndefined):
                    return false;
                case (JinjaNumber or JinjaString or JinjaBoolean, JinjaNumber or JinjaString or JinjaBoolean) when a.Kind == b.Kind ||
                    (a is JinjaNumber && b is JinjaNumber):
                    return StrictEquals(a, b);
                case (JinjaBoolean x, _):
                    a = new JinjaNumber(x.Value ? 1 : 0, true);
                    continue;
                case (_, JinjaBoolean y):
                    b = new JinjaNumber(y.Value ? 1 : 0, true);
                    continue;
                case (JinjaNumber x, JinjaString y):
                    return x.Value == ToNumber(y.Value);
                case (JinjaString x, JinjaNumber y):
                    return ToNumber(x.Value) == y.Value;
                case (JinjaList or JinjaDict or JinjaNamespace or JinjaFunction, JinjaList or JinjaDict or JinjaNamespace or JinjaFunction):
                    return ReferenceEquals(a, b);
                case (JinjaList or JinjaDict or JinjaNamespace, _):
                    a = new JinjaString(a.ToRawString()); // an object against a primitive compares as its text
                    continue;
                case (_, JinjaList or JinjaDict or JinjaNamespace):
                    b = new JinjaString(b.ToRawString());
                    continue;
                default:
                    return false;
            }
        }
    }

    /// <summary>JavaScript's ToNumber of a string: blank is 0, decimal or 0x/0o/0b integers, Infinity, else NaN.</summary>
    internal static double ToNumber(string text)
    {
        string s = JinjaBuiltins.Trim(text);
        if (s.Length == 0) return 0;
        if (s.Length > 2 && s[0] == '0' && s[1] is 'x' or 'X' or 'o' or 'O' or 'b' or 'B')
        {
            int radix = s[1] is 'x' or 'X' ? 16 : s[1] is 'o' or 'O' ? 8 : 2;
            double value = 0;
            foreach (char c in s[2..])
            {
                int digit = char.IsAsciiDigit(c) ? c - '0' : char.IsAsciiLetter(c) ? char.ToLowerInvariant(c) - 'a' + 10 : 99;
                if (digit >= radix) return double.NaN;
                value = value * radix + digit;
            }
            return value;
        }
        string unsigned = s.TrimStart('+', '-');
        if (unsigned == "Infinity") return s[0] == '-' ? double.NegativeInfinity : double.PositiveInfinity;
        if (unsigned.Length == 0 || unsigned.Any(c => !(char.IsAsciiDigit(c) || c is '.' or 'e' or 'E' or '+' or '-'))) return double.NaN;
        return double.TryParse(s, NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint | NumberStyles.AllowExponent,
            CultureInfo.InvariantCulture, out double parsed) ? parsed : double.NaN;
    }
}

using System.Globalization;

namespace LoraRuntime.Layers.Text.Jinja;

/// <summary>The expression half of the parser: one method per precedence level, lowest first.</summary>
internal sealed partial class JinjaParser
{
    // ── Expressions ──────────────────────────────────────────────────────────────────────────────────────────────

    private JinjaExpression ParseExpressionSequence(bool primary)
    {
        var first = primary ? ParsePrimary() : ParseExpression();
        if (!Is(JinjaTokenKind.Comma)) return first;
        var items = new List<JinjaExpression> { first };
        while (Is(JinjaTokenKind.Comma))
        {
            _current++;
            items.Add(primary ? ParsePrimary() : ParseExpression());
        }
        return new ListExpression(first.Position, items.ToArray(), isTuple: true);
    }

    private JinjaExpression ParseExpression() => ParseIfExpression();

    private JinjaExpression ParseIfExpression()
    {
        var value = ParseOr();
        if (!IsIdentifier("if")) return value;
        _current++;
        var condition = ParseOr();
        if (!IsIdentifier("else")) return new SelectExpression(value.Position, value, condition);
        _current++;
        return new TernaryExpression(value.Position, condition, value, ParseIfExpression());
    }

    private JinjaExpression ParseOr()
    {
        var left = ParseAnd();
        while (IsIdentifier("or"))
        {
            _current++;
            left = new BinaryExpression(left.Position, "or", left, ParseAnd());
        }
        return left;
    }

    private JinjaExpression ParseAnd()
    {
        var left = ParseNot();
        while (IsIdentifier("and"))
        {
            _current++;
            left = new BinaryExpression(left.Position, "and", left, ParseNot());
        }
        return left;
    }

    private JinjaExpression ParseNot()
    {
        if (!IsIdentifier("not")) return ParseComparison();
        var token = _tokens[_current++];
        return new UnaryExpression(At(token), "not", ParseNot());
    }

    private JinjaExpression ParseComparison()
    {
        var left = ParseAdditive();
        while (true)
        {
            string op;
            if (IsIdentifier("not") && _current + 1 < _tokens.Count && _tokens[_current + 1] is { Kind: JinjaTokenKind.Identifier, Value: "in" })
            {
                op = "not in";
                _current += 2;
            }
            else if (IsIdentifier("in"))
            {
                op = "in";
                _current++;
            }
            else if (Is(JinjaTokenKind.ComparisonOperator)) op = _tokens[_current++].Value;
            else return left;
            left = new BinaryExpression(left.Position, op, left, ParseAdditive());
        }
    }

    private JinjaExpression ParseAdditive()
    {
        var left = ParseMultiplicative();
        while (Is(JinjaTokenKind.AdditiveOperator))
        {
            string op = _tokens[_current++].Value;
            left = new BinaryExpression(left.Position, op, left, ParseMultiplicative());
        }
        return left;
    }

    private JinjaExpression ParseMultiplicative()
    {
        var left = ParsePower();
        while (Is(JinjaTokenKind.MultiplicativeOperator))
        {
            string op = _tokens[_current++].Value;
            left = new BinaryExpression(left.Position, op, left, ParsePower());
        }
        return left;
    }

    private JinjaExpression ParsePower()
    {
        var left = ParseTest();
        while (Is(JinjaTokenKind.PowerOperator))
        {
            _current++;
            left = new BinaryExpression(left.Position, "**", left, ParseTest());
        }
        return left;
    }

    private JinjaExpression ParseTest()
    {
        var operand = ParseFilter();
        while (IsIdentifier("is"))
        {
            _current++;
            bool negate = IsIdentifier("not");
            if (negate) _current++;
            var test = Peek("a test name");
            if (test.Kind != JinjaTokenKind.Identifier) throw Error($"expected a test name after 'is', got {Describe(test)}", test);
            _current++;
            operand = new TestExpression(operand.Position, operand, negate, test.Value);
        }
        return operand;
    }

    private JinjaExpression ParseFilter()
    {
        var operand = ParseUnarySign();
        while (Is(JinjaTokenKind.Pipe))
        {
            _current++;
            var (name, arguments) = ParseFilterCall();
            operand = new FilterExpression(operand.Position, operand, name, arguments);
        }
        return operand;
    }

    private (string Name, JinjaArgument[]? Arguments) ParseFilterCall()
    {
        var name = Peek("a filter name");
        if (name.Kind != JinjaTokenKind.Identifier) throw Error($"expected a filter name, got {Describe(name)}", name);
        _current++;
        var arguments = Is(JinjaTokenKind.OpenParen) ? ParseArguments() : null;
        if (arguments is not null && Is(JinjaTokenKind.Dot, JinjaTokenKind.OpenSquareBracket, JinjaTokenKind.OpenParen))
            throw Error("a filter's result cannot be subscripted or called here; put the filter in parentheses", Peek(""));
        return (name.Value, arguments);
    }

    private JinjaExpression ParseUnarySign()
    {
        var token = _current < _tokens.Count ? _tokens[_current] : default;
        if (token.Kind is JinjaTokenKind.UnaryOperator or JinjaTokenKind.AdditiveOperator && token.Value is "-" or "+")
        {
            _current++;
            return new UnaryExpression(At(token), token.Value, ParseUnarySign());
        }
        return ParseCallMember();
    }

    private JinjaExpression ParseCallMember()
    {
        var expression = ParseMember(ParsePrimary());
        while (Is(JinjaTokenKind.OpenParen))
        {
            var position = expression.Position;
            expression = ParseMember(new CallExpression(position, expression, ParseArguments()));
        }
        return expression;
    }

    private JinjaArgument[] ParseArguments()
    {
        Expect(JinjaTokenKind.OpenParen, "'('");
        var arguments = new List<JinjaArgument>();
        bool sawKeyword = false, sawSpread = false;
        while (!Is(JinjaTokenKind.CloseParen))
        {
            if (_current >= _tokens.Count) throw Error("the template ends inside an argument list", null);
            if (Is(JinjaTokenKind.PowerOperator))
            {
                _current++;
                arguments.Add(new JinjaArgument(JinjaArgumentKind.KeywordSpread, null, ParseExpression()));
                if (Is(JinjaTokenKind.Comma)) _current++;
                if (!Is(JinjaTokenKind.CloseParen)) throw Error("'**' unpacking must be the last argument", Peek("')'"));
                break;
            }
            if (Is(JinjaTokenKind.MultiplicativeOperator) && _tokens[_current].Value == "*")
            {
                if (sawSpread) throw Error("only one '*' unpacking is allowed", _tokens[_current]);
                sawSpread = true;
                _current++;
                arguments.Add(new JinjaArgument(JinjaArgumentKind.Spread, null, ParseExpression()));
            }
            else
            {
                var value = ParseExpression();
                if (Is(JinjaTokenKind.Equals))
                {
                    if (value is not NameExpression name) throw Error("a keyword argument's name must be a plain name", value.Position);
                    _current++;
                    arguments.Add(new JinjaArgument(JinjaArgumentKind.Keyword, name.Name, ParseExpression()));
                    sawKeyword = true;
                }
                else
                {
                    if (sawKeyword) throw Error("a positional argument follows a keyword argument", value.Position);
                    if (sawSpread) throw Error("a positional argument follows '*' unpacking", value.Position);
                    arguments.Add(new JinjaArgument(JinjaArgumentKind.Positional, null, value));
                }
            }
            if (Is(JinjaTokenKind.Comma)) _current++;
        }
        Expect(JinjaTokenKind.CloseParen, "')'");
        return arguments.ToArray();
    }

    private JinjaExpression ParseMember(JinjaExpression target)
    {
        while (Is(JinjaTokenKind.Dot) || Is(JinjaTokenKind.OpenSquareBracket))
        {
            var op = _tokens[_current++];
            if (op.Kind == JinjaTokenKind.OpenSquareBracket)
            {
                target = ParseSubscript(target);
                Expect(JinjaTokenKind.CloseSquareBracket, "']'");
                continue;
            }
            var property = ParsePrimary();
            if (property is not (NameExpression or LiteralExpression { Value: JinjaNumber { IsInteger: true } }))
                throw Error("expected a name or an integer after '.'", property.Position);
            target = new MemberExpression(target.Position, target, property, computed: false);
        }
        return target;
    }

    // [index], or a slice [start:stop:step] with any part left out.
    private JinjaExpression ParseSubscript(JinjaExpression target)
    {
        var parts = new List<JinjaExpression?>();
        bool isSlice = false;
        while (!Is(JinjaTokenKind.CloseSquareBracket))
        {
            if (_current >= _tokens.Count) throw Error("the template ends inside '[ ]'", null);
            if (Is(JinjaTokenKind.Colon))
            {
                parts.Add(null);
                _current++;
                isSlice = true;
            }
            else
            {
                parts.Add(ParseExpression());
                if (Is(JinjaTokenKind.Colon))
                {
                    _current++;
                    isSlice = true;
                }
            }
        }
        if (parts.Count == 0) throw Error("'[ ]' needs an index or a slice", Peek("']'"));
        if (!isSlice)
        {
            if (parts.Count > 1) throw Error("expected ']' after the index", parts[1]!.Position);
            return new MemberExpression(target.Position, target, parts[0]!, computed: true);
        }
        if (parts.Count > 3) throw Error("a slice has at most three parts (start:stop:step)", target.Position);
        return new SliceExpression(target.Position, target, parts.ElementAtOrDefault(0), parts.ElementAtOrDefault(1), parts.ElementAtOrDefault(2));
    }

    private JinjaExpression ParsePrimary()
    {
        var token = Peek("an expression");
        var position = At(token);
        _current++;
        switch (token.Kind)
        {
            case JinjaTokenKind.NumericLiteral:
            {
                double value = double.Parse(token.Value, NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture);
                return new LiteralExpression(position, new JinjaNumber(value, isInteger: !token.Value.Contains('.')));
            }
            case JinjaTokenKind.StringLiteral:
            {
                // Adjacent literals join, as in Python: 'a' 'b' is 'ab'.
                string value = token.Value;
                while (Is(JinjaTokenKind.StringLiteral)) value += _tokens[_current++].Value;
                return new LiteralExpression(position, new JinjaString(value));
            }
            case JinjaTokenKind.Identifier:
                return new NameExpression(position, token.Value);
            case JinjaTokenKind.OpenParen:
            {
                var inner = ParseExpressionSequence(primary: false);
                Expect(JinjaTokenKind.CloseParen, "')'");
                return inner;
            }
            case JinjaTokenKind.OpenSquareBracket:
            {
                var items = new List<JinjaExpression>();
                while (!Is(JinjaTokenKind.CloseSquareBracket))
                {
                    if (_current >= _tokens.Count) throw Error("the template ends inside a list '[ ]'", null);
                    items.Add(ParseExpression());
                    if (Is(JinjaTokenKind.Comma)) _current++;
                }
                _current++;
                return new ListExpression(position, items.ToArray(), isTuple: false);
            }
            case JinjaTokenKind.OpenCurlyBracket:
            {
                var entries = new List<(JinjaExpression, JinjaExpression)>();
                while (!Is(JinjaTokenKind.CloseCurlyBracket))
                {
                    if (_current >= _tokens.Count) throw Error("the template ends inside a dict '{ }'", null);
                    var key = ParseExpression();
                    Expect(JinjaTokenKind.Colon, "':' between a key and its value");
                    entries.Add((key, ParseExpression()));
                    if (Is(JinjaTokenKind.Comma)) _current++;
                }
                _current++;
                return new DictExpression(position, entries.ToArray());
            }
            default:
                throw Error($"expected an expression, got {Describe(token)}", token);
        }
    }
}

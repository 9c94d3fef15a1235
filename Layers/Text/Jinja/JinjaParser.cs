namespace LoraRuntime.Layers.Text.Jinja;

/// <summary>
/// Builds the syntax tree from the tokens, with @huggingface/jinja's grammar and precedence (lowest first):
/// <c>a if c else b</c>, <c>or</c>, <c>and</c>, <c>not</c>, comparisons with <c>in</c> and <c>not in</c> (chained
/// left to right, not Python's <c>a &lt; b &lt; c</c>), <c>+ - ~</c>, <c>* / // %</c>, <c>**</c> (left-associative),
/// <c>is</c> tests, <c>|</c> filters, unary signs, then calls, attributes, subscripts and slices.
/// </summary>
internal sealed partial class JinjaParser
{
    private readonly JinjaSource _source;
    private readonly List<JinjaToken> _tokens;
    private int _current;
    private int _loopDepth;

    private JinjaParser(JinjaSource source, List<JinjaToken> tokens)
    {
        _source = source;
        _tokens = tokens;
    }

    public static JinjaNode[] Parse(JinjaSource source)
    {
        var parser = new JinjaParser(source, JinjaLexer.Tokenize(source));
        var body = new List<JinjaNode>();
        while (parser._current < parser._tokens.Count) parser.ParseAny(body);
        return body.ToArray();
    }

    // ── Statements ───────────────────────────────────────────────────────────────────────────────────────────────

    private void ParseAny(List<JinjaNode> into)
    {
        var token = Peek("a statement");
        switch (token.Kind)
        {
            case JinjaTokenKind.Comment:
                _current++;
                return;
            case JinjaTokenKind.Text:
                _current++;
                into.Add(new TextNode(At(token), token.Value));
                return;
            case JinjaTokenKind.OpenStatement:
                into.Add(ParseStatement());
                return;
            case JinjaTokenKind.OpenExpression:
                _current++;
                var expression = ParseExpression();
                Expect(JinjaTokenKind.CloseExpression, "'}}' to close the expression");
                into.Add(new OutputNode(At(token), expression));
                return;
            default:
                throw Error($"unexpected {Describe(token)}", token);
        }
    }

    /// <summary>Parses nodes until one of <paramref name="ends"/> opens a statement tag, which is left unread.</summary>
    private JinjaNode[] ParseUntil(string what, params string[] ends)
    {
        var body = new List<JinjaNode>();
        while (!IsStatement(ends))
        {
            if (_current >= _tokens.Count) throw Error($"the template ends inside {what}; expected {{% {ends[^1]} %}}", null);
            ParseAny(body);
        }
        return body.ToArray();
    }

    private JinjaNode ParseStatement()
    {
        var open = Expect(JinjaTokenKind.OpenStatement, "'{%'");
        var keyword = Peek("a statement name");
        if (keyword.Kind != JinjaTokenKind.Identifier) throw Error($"expected a statement name, got {Describe(keyword)}", keyword);
        var position = At(open);
        _current++;
        switch (keyword.Value)
        {
            case "set":
                return ParseSet(position);
            case "if":
            {
                var node = ParseIf(position);
                ExpectEnd("endif");
                return node;
            }
            case "for":
            {
                var node = ParseFor(position);
                ExpectEnd("endfor");
                return node;
            }
            case "macro":
                return ParseMacro(position);
            case "filter":
            {
                var (name, arguments) = ParseFilterCall();
                Expect(JinjaTokenKind.CloseStatement, "'%}'");
                var body = ParseUntil("a filter block", "endfilter");
                ExpectEnd("endfilter");
                return new FilterBlockNode(position, name, arguments, body);
            }
            case "break" or "continue":
                if (_loopDepth == 0) throw Error($"{{% {keyword.Value} %}} outside a loop", keyword);
                Expect(JinjaTokenKind.CloseStatement, "'%}'");
                return new LoopControlNode(position, keyword.Value == "break");
            case "call":
                throw Error("{% call %} blocks are not supported", keyword);
            default:
                throw Error($"unknown statement '{keyword.Value}'", keyword);
        }
    }

    private void ExpectEnd(string keyword)
    {
        Expect(JinjaTokenKind.OpenStatement, $"{{% {keyword} %}}");
        var token = Peek(keyword);
        if (token.Kind != JinjaTokenKind.Identifier || token.Value != keyword) throw Error($"expected {{% {keyword} %}}, got {Describe(token)}", token);
        _current++;
        Expect(JinjaTokenKind.CloseStatement, "'%}'");
    }

    private JinjaNode ParseSet(JinjaPosition position)
    {
        var target = ParseExpressionSequence(primary: false);
        if (!IsAssignable(target)) throw Error("{% set %} assigns to a name, a tuple of names or a namespace attribute", position);
        if (Is(JinjaTokenKind.Equals))
        {
            _current++;
            var value = ParseExpressionSequence(primary: false);
            Expect(JinjaTokenKind.CloseStatement, "'%}'");
            return new SetNode(position, target, value, []);
        }
        Expect(JinjaTokenKind.CloseStatement, "'=' or '%}'");
        var body = ParseUntil("a {% set %} block", "endset");
        ExpectEnd("endset");
        return new SetNode(position, target, null, body);
    }

    private static bool IsAssignable(JinjaExpression target) => target switch
    {
        NameExpression => true,
        ListExpression { IsTuple: true } tuple => tuple.Items.All(i => i is NameExpression),
        MemberExpression { Computed: false, Property: NameExpression } => true,
        _ => false,
    };

    private IfNode ParseIf(JinjaPosition position)
    {
        var test = ParseExpression();
        Expect(JinjaTokenKind.CloseStatement, "'%}'");
        var body = ParseUntil("an {% if %}", "elif", "else", "endif");
        JinjaNode[] otherwise = [];
        if (IsStatement("elif"))
        {
            var elif = _tokens[_current];
            _current += 2;
            otherwise = [ParseIf(At(elif))];
        }
        else if (IsStatement("else"))
        {
            _current += 2;
            Expect(JinjaTokenKind.CloseStatement, "'%}'");
            otherwise = ParseUntil("an {% else %}", "endif");
        }
        return new IfNode(position, test, body, otherwise);
    }

    private ForNode ParseFor(JinjaPosition position)
    {
        var target = ParseExpressionSequence(primary: true);
        if (target is not (NameExpression or ListExpression { IsTuple: true }) ||
            target is ListExpression tuple && !tuple.Items.All(i => i is NameExpression))
            throw Error("a loop variable is a name or a tuple of names", target.Position);
        if (!IsIdentifier("in")) throw Error("expected 'in' after the loop variable", Peek("'in'"));
        _current++;
        var iterable = ParseExpression();
        JinjaExpression? condition = null;
        if (iterable is SelectExpression select)
        {
            iterable = select.Value;
            condition = select.Condition;
        }
        Expect(JinjaTokenKind.CloseStatement, "'%}'");
        _loopDepth++;
        var body = ParseUntil("a {% for %}", "else", "endfor");
        _loopDepth--;
        JinjaNode[] otherwise = [];
        if (IsStatement("else"))
        {
            _current += 2;
            Expect(JinjaTokenKind.CloseStatement, "'%}'");
            otherwise = ParseUntil("a {% for %}'s {% else %}", "endfor");
        }
        return new ForNode(position, target, iterable, condition, body, otherwise);
    }

    private MacroNode ParseMacro(JinjaPosition position)
    {
        var name = Peek("a macro name");
        if (name.Kind != JinjaTokenKind.Identifier) throw Error("expected a macro name", name);
        _current++;
        var parameters = new List<JinjaParameter>();
        foreach (var argument in ParseArguments())
        {
            if (argument.Kind == JinjaArgumentKind.Positional && argument.Value is NameExpression plain)
                parameters.Add(new JinjaParameter(plain.Name, null));
            else if (argument.Kind == JinjaArgumentKind.Keyword)
                parameters.Add(new JinjaParameter(argument.Name!, argument.Value));
            else
                throw Error("a macro parameter is a name, with an optional default (name=value)", argument.Value.Position);
            if (parameters.Count(p => p.Name == parameters[^1].Name) > 1) throw Error($"duplicate parameter '{parameters[^1].Name}'", argument.Value.Position);
        }
        Expect(JinjaTokenKind.CloseStatement, "'%}'");
        int loops = _loopDepth;
        _loopDepth = 0;
        var body = ParseUntil("a {% macro %}", "endmacro");
        _loopDepth = loops;
        ExpectEnd("endmacro");
        return new MacroNode(position, name.Value, parameters.ToArray(), body);
    }

    // ── Tokens ───────────────────────────────────────────────────────────────────────────────────────────────────

    private bool Is(JinjaTokenKind kind) => _current < _tokens.Count && _tokens[_current].Kind == kind;

    private bool Is(params JinjaTokenKind[] kinds) => _current < _tokens.Count && kinds.Contains(_tokens[_current].Kind);

    private bool IsIdentifier(string name) =>
        _current < _tokens.Count && _tokens[_current] is { Kind: JinjaTokenKind.Identifier } t && t.Value == name;

    private bool IsStatement(params string[] names) =>
        _current + 1 < _tokens.Count && _tokens[_current].Kind == JinjaTokenKind.OpenStatement &&
        _tokens[_current + 1].Kind == JinjaTokenKind.Identifier && names.Contains(_tokens[_current + 1].Value);

    private JinjaToken Peek(string expected) =>
        _current < _tokens.Count ? _tokens[_current] : throw Error($"the template ends where {expected} was expected", null);

    private JinjaToken Expect(JinjaTokenKind kind, string expected)
    {
        var token = Peek(expected);
        if (token.Kind != kind) throw Error($"expected {expected}, got {Describe(token)}", token);
        _current++;
        return token;
    }

    private JinjaPosition At(JinjaToken token) => _source.Locate(token.Offset);

    private JinjaSyntaxException Error(string reason, JinjaToken? token) =>
        Error(reason, token is { } t ? At(t) : _source.Locate(_source.Text.Length));

    private static JinjaSyntaxException Error(string reason, JinjaPosition position) =>
        new(reason, position.Line, position.Column);

    private static string Describe(JinjaToken token) => token.Kind switch
    {
        JinjaTokenKind.Text => "text",
        JinjaTokenKind.Comment => "a comment",
        JinjaTokenKind.StringLiteral => "a string",
        JinjaTokenKind.NumericLiteral => $"the number {token.Value}",
        JinjaTokenKind.Identifier => $"'{token.Value}'",
        _ => $"'{token.Value}'",
    };
}

namespace LoraRuntime.Layers.Text.Jinja;

/// <summary>A node of a parsed template, with where it starts in the template's text.</summary>
internal abstract class JinjaNode(JinjaPosition position)
{
    public JinjaPosition Position { get; } = position;
}

// ── Statements ───────────────────────────────────────────────────────────────────────────────────────────────────

/// <summary>Text outside tags, copied to the output.</summary>
internal sealed class TextNode(JinjaPosition position, string text) : JinjaNode(position)
{
    public string Text { get; } = text;
}

/// <summary><c>{{ expression }}</c>: the value's text, nothing for none or undefined.</summary>
internal sealed class OutputNode(JinjaPosition position, JinjaExpression expression) : JinjaNode(position)
{
    public JinjaExpression Expression { get; } = expression;
}

/// <summary><c>{% if %}</c> … <c>{% elif %}</c> … <c>{% else %}</c> … <c>{% endif %}</c> (an elif is an if in the else branch).</summary>
internal sealed class IfNode(JinjaPosition position, JinjaExpression test, JinjaNode[] body, JinjaNode[] otherwise) : JinjaNode(position)
{
    public JinjaExpression Test { get; } = test;
    public JinjaNode[] Body { get; } = body;
    public JinjaNode[] Otherwise { get; } = otherwise;
}

/// <summary><c>{% for target in iterable [if condition] %}</c> … <c>{% else %}</c> … <c>{% endfor %}</c>.</summary>
internal sealed class ForNode(JinjaPosition position, JinjaExpression target, JinjaExpression iterable, JinjaExpression? condition,
    JinjaNode[] body, JinjaNode[] otherwise) : JinjaNode(position)
{
    /// <summary>A name, or a tuple of names to unpack each item into.</summary>
    public JinjaExpression Target { get; } = target;
    public JinjaExpression Iterable { get; } = iterable;
    public JinjaExpression? Condition { get; } = condition;
    public JinjaNode[] Body { get; } = body;
    public JinjaNode[] Otherwise { get; } = otherwise;
}

/// <summary><c>{% set target = value %}</c>, or the block form <c>{% set target %}</c> … <c>{% endset %}</c> (<see cref="Value"/> null).</summary>
internal sealed class SetNode(JinjaPosition position, JinjaExpression target, JinjaExpression? value, JinjaNode[] body) : JinjaNode(position)
{
    /// <summary>A name, a tuple of names, or an attribute of a namespace (<c>ns.x</c>).</summary>
    public JinjaExpression Target { get; } = target;
    public JinjaExpression? Value { get; } = value;
    public JinjaNode[] Body { get; } = body;
}

/// <summary><c>{% macro name(parameters) %}</c> … <c>{% endmacro %}</c>.</summary>
internal sealed class MacroNode(JinjaPosition position, string name, JinjaParameter[] parameters, JinjaNode[] body) : JinjaNode(position)
{
    public string Name { get; } = name;
    public JinjaParameter[] Parameters { get; } = parameters;
    public JinjaNode[] Body { get; } = body;
}

/// <summary>A macro parameter, with its default value when it has one.</summary>
internal sealed record JinjaParameter(string Name, JinjaExpression? Default);

/// <summary><c>{% filter name(arguments) %}</c> … <c>{% endfilter %}</c>: the block's text through a filter.</summary>
internal sealed class FilterBlockNode(JinjaPosition position, string filter, JinjaArgument[]? arguments, JinjaNode[] body) : JinjaNode(position)
{
    public string Filter { get; } = filter;
    public JinjaArgument[]? Arguments { get; } = arguments;
    public JinjaNode[] Body { get; } = body;
}

/// <summary><c>{% break %}</c> or <c>{% continue %}</c> inside a loop.</summary>
internal sealed class LoopControlNode(JinjaPosition position, bool isBreak) : JinjaNode(position)
{
    public bool IsBreak { get; } = isBreak;
}

// ── Expressions ──────────────────────────────────────────────────────────────────────────────────────────────────

internal abstract class JinjaExpression(JinjaPosition position) : JinjaNode(position);

/// <summary>A number or string written in the template.</summary>
internal sealed class LiteralExpression(JinjaPosition position, JinjaValue value) : JinjaExpression(position)
{
    public JinjaValue Value { get; } = value;
}

/// <summary>A variable (true, false and none are variables too, as in the reference).</summary>
internal sealed class NameExpression(JinjaPosition position, string name) : JinjaExpression(position)
{
    public string Name { get; } = name;
}

/// <summary><c>[a, b]</c>, or a tuple <c>(a, b)</c> / <c>a, b</c>.</summary>
internal sealed class ListExpression(JinjaPosition position, JinjaExpression[] items, bool isTuple) : JinjaExpression(position)
{
    public JinjaExpression[] Items { get; } = items;
    public bool IsTuple { get; } = isTuple;
}

/// <summary><c>{key: value, …}</c>.</summary>
internal sealed class DictExpression(JinjaPosition position, (JinjaExpression Key, JinjaExpression Value)[] entries) : JinjaExpression(position)
{
    public (JinjaExpression Key, JinjaExpression Value)[] Entries { get; } = entries;
}

/// <summary><c>target.name</c>, <c>target.0</c> or <c>target[expression]</c>.</summary>
internal sealed class MemberExpression(JinjaPosition position, JinjaExpression target, JinjaExpression property, bool computed) : JinjaExpression(position)
{
    public JinjaExpression Target { get; } = target;
    /// <summary>For dot access, a <see cref="NameExpression"/> or an integer <see cref="LiteralExpression"/>.</summary>
    public JinjaExpression Property { get; } = property;
    public bool Computed { get; } = computed;
}

/// <summary><c>target[start:stop:step]</c>, each part optional.</summary>
internal sealed class SliceExpression(JinjaPosition position, JinjaExpression target, JinjaExpression? start, JinjaExpression? stop,
    JinjaExpression? step) : JinjaExpression(position)
{
    public JinjaExpression Target { get; } = target;
    public JinjaExpression? Start { get; } = start;
    public JinjaExpression? Stop { get; } = stop;
    public JinjaExpression? Step { get; } = step;
}

/// <summary><c>callee(arguments)</c>.</summary>
internal sealed class CallExpression(JinjaPosition position, JinjaExpression callee, JinjaArgument[] arguments) : JinjaExpression(position)
{
    public JinjaExpression Callee { get; } = callee;
    public JinjaArgument[] Arguments { get; } = arguments;
}

internal enum JinjaArgumentKind { Positional, Keyword, Spread, KeywordSpread }

/// <summary>An argument of a call or filter: <c>x</c>, <c>name=x</c>, <c>*x</c> or <c>**x</c>.</summary>
internal sealed record JinjaArgument(JinjaArgumentKind Kind, string? Name, JinjaExpression Value);

/// <summary><c>left op right</c>: arithmetic, <c>~</c>, comparisons, <c>in</c>, <c>not in</c>, <c>and</c>, <c>or</c>.</summary>
internal sealed class BinaryExpression(JinjaPosition position, string op, JinjaExpression left, JinjaExpression right) : JinjaExpression(position)
{
    public string Operator { get; } = op;
    public JinjaExpression Left { get; } = left;
    public JinjaExpression Right { get; } = right;
}

/// <summary><c>not x</c>, <c>-x</c>, <c>+x</c>.</summary>
internal sealed class UnaryExpression(JinjaPosition position, string op, JinjaExpression operand) : JinjaExpression(position)
{
    public string Operator { get; } = op;
    public JinjaExpression Operand { get; } = operand;
}

/// <summary><c>operand | name</c> or <c>operand | name(arguments)</c> (<see cref="Arguments"/> null without parentheses).</summary>
internal sealed class FilterExpression(JinjaPosition position, JinjaExpression operand, string name, JinjaArgument[]? arguments) : JinjaExpression(position)
{
    public JinjaExpression Operand { get; } = operand;
    public string Name { get; } = name;
    public JinjaArgument[]? Arguments { get; } = arguments;
}

/// <summary><c>operand is [not] name</c>.</summary>
internal sealed class TestExpression(JinjaPosition position, JinjaExpression operand, bool negate, string name) : JinjaExpression(position)
{
    public JinjaExpression Operand { get; } = operand;
    public bool Negate { get; } = negate;
    public string Name { get; } = name;
}

/// <summary><c>whenTrue if condition else whenFalse</c>.</summary>
internal sealed class TernaryExpression(JinjaPosition position, JinjaExpression condition, JinjaExpression whenTrue, JinjaExpression whenFalse)
    : JinjaExpression(position)
{
    public JinjaExpression Condition { get; } = condition;
    public JinjaExpression WhenTrue { get; } = whenTrue;
    public JinjaExpression WhenFalse { get; } = whenFalse;
}

/// <summary><c>value if condition</c> with no else: undefined when the condition is false (and a loop's filter).</summary>
internal sealed class SelectExpression(JinjaPosition position, JinjaExpression value, JinjaExpression condition) : JinjaExpression(position)
{
    public JinjaExpression Value { get; } = value;
    public JinjaExpression Condition { get; } = condition;
}

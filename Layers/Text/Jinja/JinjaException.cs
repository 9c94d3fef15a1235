namespace LoraRuntime.Layers.Text.Jinja;

/// <summary>
/// A template that cannot be rendered: an operation the values do not support, an unknown filter or test, a value
/// that cannot be converted. <see cref="Line"/> and <see cref="Column"/> (1-based, in the template's own text) name
/// the innermost expression or statement that failed, when it is known (0 otherwise); the message starts with them.
/// </summary>
internal class JinjaException : Exception
{
    public JinjaException(string reason) : this(reason, 0, 0) { }

    public JinjaException(string reason, int line, int column, Exception? inner = null)
        : base(line > 0 ? $"line {line}, column {column}: {reason}" : reason, inner)
    {
        Reason = reason;
        Line = line;
        Column = column;
    }

    /// <summary>What went wrong, without the position.</summary>
    public string Reason { get; }

    /// <summary>The 1-based line of the failing construct in the template, or 0 when unknown.</summary>
    public int Line { get; }

    /// <summary>The 1-based column (UTF-16 units) of the failing construct, or 0 when unknown.</summary>
    public int Column { get; }

    /// <summary>This error at a position, when it has none yet (the innermost construct that knows one names it).</summary>
    internal virtual JinjaException At(JinjaPosition position) =>
        Line > 0 || position.Line == 0 ? this : new JinjaException(Reason, position.Line, position.Column, this);
}

/// <summary>Template text that is not valid Jinja (as far as this interpreter reads it), with the line and column.</summary>
internal sealed class JinjaSyntaxException(string reason, int line, int column) : JinjaException(reason, line, column)
{
    internal override JinjaException At(JinjaPosition position) => this;
}

/// <summary>
/// The template called <c>raise_exception(message)</c>, as chat templates do to refuse a conversation they cannot
/// format (a wrong role order, a role they do not know). <see cref="Exception.Message"/> is the template's message,
/// unchanged.
/// </summary>
internal sealed class JinjaRaisedException(string message) : JinjaException(message)
{
    internal override JinjaException At(JinjaPosition position) => this;
}

/// <summary>A 1-based line and column in a template's text (0, 0 when unknown).</summary>
internal readonly record struct JinjaPosition(int Line, int Column);

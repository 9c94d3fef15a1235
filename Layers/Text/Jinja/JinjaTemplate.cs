namespace LoraRuntime.Layers.Text.Jinja;

/// <summary>
/// A parsed Jinja template, rendered as Hugging Face renders chat templates (trim_blocks and lstrip_blocks on,
/// undefined variables empty and false). The subset and its semantics are @huggingface/jinja's (transformers.js),
/// which the tests compare renderings with: statements if/elif/else, for (with else, an if filter, tuple unpacking,
/// <c>loop</c>, break and continue), set (also to a namespace attribute, and the block form), macro and filter
/// blocks; literals, lists, dicts, tuples, attribute and item access, slices, arithmetic, <c>~</c>, comparisons,
/// <c>in</c>, <c>and</c>/<c>or</c>/<c>not</c>, <c>is</c> tests, filters and the string and dict methods chat
/// templates call. <c>{% call %}</c> blocks, <c>{% include %}</c>, <c>{% extends %}</c>, autoescaping and custom
/// filters are not supported. A parsed template can be rendered any number of times, from any threads.
/// </summary>
internal sealed class JinjaTemplate
{
    private readonly JinjaNode[] _program;

    private JinjaTemplate(string source, JinjaNode[] program)
    {
        Source = source;
        _program = program;
    }

    /// <summary>The template's text as given.</summary>
    public string Source { get; }

    /// <summary>Parses <paramref name="source"/>; a <see cref="JinjaSyntaxException"/> names the line and column of what cannot be read.</summary>
    public static JinjaTemplate Parse(string source)
    {
        ArgumentNullException.ThrowIfNull(source);
        return new JinjaTemplate(source, JinjaParser.Parse(JinjaSource.Preprocess(source)));
    }

    /// <summary>
    /// Renders with <paramref name="variables"/> (values as <see cref="JinjaValue.FromObject"/> takes them). Errors are
    /// <see cref="JinjaException"/>s with the position of the failing construct; <c>raise_exception</c> throws
    /// <see cref="JinjaRaisedException"/> with the template's message.
    /// </summary>
    public string Render(IReadOnlyDictionary<string, object?> variables)
    {
        ArgumentNullException.ThrowIfNull(variables);
        var globals = JinjaBuiltins.CreateGlobals();
        foreach (var (name, value) in variables)
        {
            if (JinjaBuiltins.GlobalNames.Contains(name))
                throw new ArgumentException($"the variable '{name}' would hide the template global of that name", nameof(variables));
            globals.Set(name, JinjaValue.FromObject(value));
        }
        return JinjaInterpreter.Render(_program, new JinjaScope(globals));
    }
}

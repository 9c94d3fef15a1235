namespace LoraRuntime.Layers.Text.Jinja;

/// <summary>
/// Variables visible at a point of a template: a for loop and a macro call each open a scope, whose assignments the
/// code after it does not see (hence <c>namespace()</c>); if blocks do not.
/// </summary>
internal sealed class JinjaScope(JinjaScope? parent)
{
    private readonly JinjaScope? _parent = parent;
    private readonly Dictionary<string, JinjaValue> _variables = new(StringComparer.Ordinal);

    /// <summary>The variable's value in the nearest scope that has it, else undefined.</summary>
    public JinjaValue Lookup(string name)
    {
        for (var scope = this; scope is not null; scope = scope._parent)
            if (scope._variables.TryGetValue(name, out var value)) return value;
        return JinjaValue.Undefined;
    }

    /// <summary>Whether this scope itself (not a parent) has the variable.</summary>
    public bool HasOwn(string name) => _variables.ContainsKey(name);

    /// <summary>Assigns in this scope (a parent's variable of the same name is hidden, not changed).</summary>
    public void Set(string name, JinjaValue value) => _variables[name] = value;
}

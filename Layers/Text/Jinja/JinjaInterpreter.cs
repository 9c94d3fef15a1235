using System.Text;

namespace LoraRuntime.Layers.Text.Jinja;

/// <summary>
/// Renders a parsed template. Statements write to one output; a for loop opens a scope per loop (its body's
/// assignments persist from one iteration to the next but not after the loop), sets <c>loop</c>, and renders its
/// else block when no iteration completed. Expressions follow @huggingface/jinja's semantics, which the tests check.
/// </summary>
internal sealed partial class JinjaInterpreter
{
    private enum Flow { Normal, Break, Continue }

    public static string Render(JinjaNode[] program, JinjaScope globals)
    {
        var output = new StringBuilder();
        new JinjaInterpreter().RenderBlock(program, globals, output);
        return output.ToString();
    }

    // ── Statements ───────────────────────────────────────────────────────────────────────────────────────────────

    private Flow RenderBlock(JinjaNode[] nodes, JinjaScope scope, StringBuilder output)
    {
        foreach (var node in nodes)
        {
            Flow flow;
            try
            {
                flow = RenderNode(node, scope, output);
            }
            catch (JinjaException e) when (e.Line == 0)
            {
                throw e.At(node.Position);
            }
            if (flow != Flow.Normal) return flow;
        }
        return Flow.Normal;
    }

    private Flow RenderNode(JinjaNode node, JinjaScope scope, StringBuilder output)
    {
        switch (node)
        {
            case TextNode text:
                output.Append(text.Text);
                return Flow.Normal;
            case OutputNode print:
                Print(Evaluate(print.Expression, scope), output);
                return Flow.Normal;
            case IfNode branch:
                return RenderBlock(Evaluate(branch.Test, scope).IsTruthy ? branch.Body : branch.Otherwise, scope, output);
            case ForNode loop:
                return RenderFor(loop, scope, output);
            case SetNode set:
                return ExecuteSet(set, scope);
            case MacroNode macro:
                DefineMacro(macro, scope);
                return Flow.Normal;
            case FilterBlockNode filter:
            {
                var (text, flow) = RenderToString(filter.Body, scope);
                if (flow != Flow.Normal) return flow;
                Print(JinjaFilters.Apply(this, new JinjaString(text), filter.Filter, filter.Arguments, scope), output);
                return Flow.Normal;
            }
            case LoopControlNode control:
                return control.IsBreak ? Flow.Break : Flow.Continue;
            default:
                throw new JinjaException($"cannot render a {node.GetType().Name}");
        }
    }

    private static void Print(JinjaValue value, StringBuilder output)
    {
        if (value.Kind is not (JinjaKind.None or JinjaKind.Undefined)) output.Append(value.ToDisplayString());
    }

    private (string Text, Flow Flow) RenderToString(JinjaNode[] body, JinjaScope scope)
    {
        var output = new StringBuilder();
        var flow = RenderBlock(body, scope, output);
        return (output.ToString(), flow);
    }

    private Flow RenderFor(ForNode node, JinjaScope scope, StringBuilder output)
    {
        var loopScope = new JinjaScope(scope);
        var iterable = Evaluate(node.Iterable, loopScope);
        List<JinjaValue> candidates = iterable switch
        {
            JinjaList list => list.Items,
            JinjaDict dict => dict.Entries.Keys.Select(k => (JinjaValue)new JinjaString(k)).ToList(),
            _ => throw new JinjaException($"cannot loop over {iterable.Described}"),
        };

        // Every item is checked (and, with an if, selected) before the first iteration.
        var items = new List<JinjaValue>(candidates.Count);
        foreach (var candidate in candidates)
        {
            if (node.Target is ListExpression targets)
            {
                if (candidate is not JinjaList { IsTuple: false } values)
                    throw new JinjaException($"cannot unpack {candidate.Described} into {targets.Items.Length} loop variables");
                if (values.Items.Count != targets.Items.Length)
                    throw new JinjaException($"too {(values.Items.Count < targets.Items.Length ? "few" : "many")} items to unpack " +
                                             $"({values.Items.Count} into {targets.Items.Length} loop variables)");
            }
            if (node.Condition is not null)
            {
                var testScope = new JinjaScope(loopScope);
                Bind(node.Target, candidate, testScope);
                if (!Evaluate(node.Condition, testScope).IsTruthy) continue;
            }
            items.Add(candidate);
        }

        bool completedOne = false;
        for (int i = 0; i < items.Count; i++)
        {
            loopScope.Set("loop", LoopVariable(items, i));
            Bind(node.Target, items[i], loopScope);
            int mark = output.Length;
            var flow = RenderBlock(node.Body, loopScope, output);
            // As in the reference, break and continue drop what the interrupted iteration had written.
            if (flow != Flow.Normal) output.Length = mark;
            if (flow == Flow.Continue) continue;
            if (flow == Flow.Break) break;
            completedOne = true;
        }
        return completedOne ? Flow.Normal : RenderBlock(node.Otherwise, loopScope, output);
    }

    private static JinjaDict LoopVariable(List<JinjaValue> items, int i)
    {
        var loop = new JinjaDict();
        int length = items.Count;
        loop.Entries["index"] = new JinjaNumber(i + 1, true);
        loop.Entries["index0"] = new JinjaNumber(i, true);
        loop.Entries["revindex"] = new JinjaNumber(length - i, true);
        loop.Entries["revindex0"] = new JinjaNumber(length - i - 1, true);
        loop.Entries["first"] = JinjaValue.Boolean(i == 0);
        loop.Entries["last"] = JinjaValue.Boolean(i == length - 1);
        loop.Entries["length"] = new JinjaNumber(length, true);
        loop.Entries["previtem"] = i > 0 ? items[i - 1] : JinjaValue.Undefined;
        loop.Entries["nextitem"] = i < length - 1 ? items[i + 1] : JinjaValue.Undefined;
        return loop;
    }

    private static void Bind(JinjaExpression target, JinjaValue value, JinjaScope scope)
    {
        if (target is NameExpression name)
        {
            scope.Set(name.Name, value);
            return;
        }
        var names = ((ListExpression)target).Items;
        var values = ((JinjaList)value).Items;
        for (int j = 0; j < names.Length; j++) scope.Set(((NameExpression)names[j]).Name, values[j]);
    }

    private Flow ExecuteSet(SetNode node, JinjaScope scope)
    {
        JinjaValue value;
        if (node.Value is not null) value = Evaluate(node.Value, scope);
        else
        {
            var (text, flow) = RenderToString(node.Body, scope);
            if (flow != Flow.Normal) return flow;
            value = new JinjaString(text);
        }

        switch (node.Target)
        {
            case NameExpression name:
                scope.Set(name.Name, value);
                break;
            case ListExpression tuple:
                if (value is not JinjaList list) throw new JinjaException($"cannot unpack {value.Described} in {{% set %}}");
                if (list.Items.Count != tuple.Items.Length)
                    throw new JinjaException($"too {(list.Items.Count < tuple.Items.Length ? "few" : "many")} items to unpack in {{% set %}}");
                for (int i = 0; i < tuple.Items.Length; i++) scope.Set(((NameExpression)tuple.Items[i]).Name, list.Items[i]);
                break;
            case MemberExpression { Property: NameExpression attribute } member:
                var target = Evaluate(member.Target, scope);
                if (target is not JinjaNamespace ns)
                    throw new JinjaException($"cannot assign an attribute of {target.Described}; only a namespace() takes {{% set x.{attribute.Name} = … %}}");
                ns.Entries[attribute.Name] = value;
                break;
        }
        return Flow.Normal;
    }

    // Macros see the scope they were defined in (late-bound: names assigned there later are visible too).
    private void DefineMacro(MacroNode node, JinjaScope scope) =>
        scope.Set(node.Name, new JinjaFunction(node.Name, arguments =>
        {
            var call = new JinjaScope(scope);
            var keywords = new OrderedDictionary<string, JinjaValue>(arguments.Keywords);
            var defaults = new List<JinjaParameter>();
            for (int i = 0; i < node.Parameters.Length; i++)
            {
                var parameter = node.Parameters[i];
                JinjaValue? value = i < arguments.Positional.Count ? arguments.Positional[i] : null;
                if (value is null && keywords.Remove(parameter.Name, out var keyword)) value = keyword;
                if (value is null && parameter.Default is not null) defaults.Add(parameter);
                call.Set(parameter.Name, value ?? JinjaValue.Undefined);
            }
            if (keywords.Count > 0) throw new JinjaException($"macro '{node.Name}' takes no keyword argument '{keywords.GetAt(0).Key}'");
            if (arguments.Positional.Count > node.Parameters.Length)
                throw new JinjaException($"macro '{node.Name}' takes not more than {node.Parameters.Length} argument(s)");
            foreach (var parameter in defaults) call.Set(parameter.Name, Evaluate(parameter.Default!, call));
            var (text, _) = RenderToString(node.Body, call);
            return new JinjaString(text);
        }));

    // ── Expressions ──────────────────────────────────────────────────────────────────────────────────────────────

    public JinjaValue Evaluate(JinjaExpression expression, JinjaScope scope)
    {
        try
        {
            return EvaluateCore(expression, scope);
        }
        catch (JinjaException e) when (e.Line == 0)
        {
            throw e.At(expression.Position);
        }
    }

    private JinjaValue EvaluateCore(JinjaExpression expression, JinjaScope scope)
    {
        switch (expression)
        {
            case LiteralExpression literal:
                return literal.Value;
            case NameExpression name:
                return scope.Lookup(name.Name);
            case MemberExpression member:
            {
                var target = Evaluate(member.Target, scope);
                JinjaValue property = member.Computed ? Evaluate(member.Property, scope)
                    : member.Property is NameExpression n ? new JinjaString(n.Name) : ((LiteralExpression)member.Property).Value;
                return JinjaBuiltins.GetMember(target, property);
            }
            case BinaryExpression binary:
                return EvaluateBinary(binary, scope);
            case CallExpression call:
            {
                var arguments = EvaluateArguments(call.Arguments, scope);
                var callee = Evaluate(call.Callee, scope);
                if (callee is not JinjaFunction function) throw new JinjaException($"{callee.Described} cannot be called");
                return function.Invoke(arguments);
            }
            case FilterExpression filter:
                return JinjaFilters.Apply(this, Evaluate(filter.Operand, scope), filter.Name, filter.Arguments, scope);
            case TestExpression test:
                return JinjaValue.Boolean(JinjaFilters.Test(test.Name, Evaluate(test.Operand, scope)) != test.Negate);
            case TernaryExpression ternary:
                return Evaluate(ternary.Condition, scope).IsTruthy ? Evaluate(ternary.WhenTrue, scope) : Evaluate(ternary.WhenFalse, scope);
            case UnaryExpression unary:
                return EvaluateUnary(unary, scope);
            case ListExpression list:
                return new JinjaList(list.Items.Select(i => Evaluate(i, scope)).ToList(), list.IsTuple);
            case DictExpression dict:
            {
                var result = new JinjaDict();
                foreach (var (keyExpression, valueExpression) in dict.Entries)
                {
                    var key = Evaluate(keyExpression, scope);
                    if (key is not JinjaString s) throw new JinjaException($"a dict key must be a string, not {key.Described}");
                    result.Entries[s.Value] = Evaluate(valueExpression, scope);
                }
                return result;
            }
            case SliceExpression slice:
                return Slice(Evaluate(slice.Target, scope), SliceBound(slice.Start, scope, "start"), SliceBound(slice.Stop, scope, "stop"),
                    SliceBound(slice.Step, scope, "step"));
            case SelectExpression select:
                return Evaluate(select.Condition, scope).IsTruthy ? Evaluate(select.Value, scope) : JinjaValue.Undefined;
            default:
                throw new JinjaException($"cannot evaluate a {expression.GetType().Name}");
        }
    }

    /// <summary>Positional arguments (with <c>*</c> unpacking) first, then keyword ones (with <c>**</c>), as Python evaluates them.</summary>
    public JinjaArguments EvaluateArguments(JinjaArgument[]? arguments, JinjaScope scope)
    {
        if (arguments is null || arguments.Length == 0) return JinjaArguments.Empty;
        var positional = new List<JinjaValue>();
        var keywords = new OrderedDictionary<string, JinjaValue>(StringComparer.Ordinal);
        foreach (var argument in arguments)
        {
            if (argument.Kind == JinjaArgumentKind.Positional) positional.Add(Evaluate(argument.Value, scope));
            else if (argument.Kind == JinjaArgumentKind.Spread)
            {
                var value = Evaluate(argument.Value, scope);
                if (value is not JinjaList list) throw new JinjaException($"cannot unpack {value.Described} with '*'");
                positional.AddRange(list.Items);
            }
        }
        foreach (var argument in arguments)
        {
            if (argument.Kind == JinjaArgumentKind.Keyword) AddKeyword(argument.Name!, Evaluate(argument.Value, scope));
            else if (argument.Kind == JinjaArgumentKind.KeywordSpread)
            {
                var value = Evaluate(argument.Value, scope);
                if (value is not JinjaDict dict) throw new JinjaException($"the argument after '**' must be a dict, not {value.Described}");
                foreach (var (key, item) in dict.Entries) AddKeyword(key, item);
            }
        }
        return new JinjaArguments(positional, keywords);

        void AddKeyword(string name, JinjaValue value)
        {
            if (!keywords.TryAdd(name, value)) throw new JinjaException($"got multiple values for keyword argument '{name}'");
        }
    }

    private JinjaValue EvaluateUnary(UnaryExpression unary, JinjaScope scope)
    {
        var operand = Evaluate(unary.Operand, scope);
        if (unary.Operator == "not") return JinjaValue.Boolean(!operand.IsTruthy);
        double sign = unary.Operator == "-" ? -1 : 1;
        return operand switch
        {
            JinjaNumber n => new JinjaNumber(sign * n.Value, n.IsInteger),
            JinjaBoolean b => new JinjaNumber(sign * (b.Value ? 1 : 0), true),
            _ => throw new JinjaException($"unary '{unary.Operator}' does not apply to {operand.Described}"),
        };
    }

    private JinjaNumber? SliceBound(JinjaExpression? bound, JinjaScope scope, string what)
    {
        if (bound is null) return null;
        var value = Evaluate(bound, scope);
        return value switch
        {
            JinjaUndefined => null,
            JinjaNumber { IsInteger: true } n => n,
            _ => throw new JinjaException($"a slice's {what} must be an integer, not {value.Described}"),
        };
    }

    /// <summary>Python's slicing; a string is sliced by code points.</summary>
    private static JinjaValue Slice(JinjaValue target, JinjaNumber? start, JinjaNumber? stop, JinjaNumber? step)
    {
        if (target is JinjaList list) return new JinjaList(SliceIndices(list.Items.Count, start, stop, step).Select(i => list.Items[i]).ToList());
        if (target is JinjaString s)
        {
            var points = JinjaBuiltins.CodePoints(s.Value);
            return new JinjaString(string.Concat(SliceIndices(points.Count, start, stop, step).Select(i => points[i])));
        }
        throw new JinjaException($"{target.Described} cannot be sliced");
    }

    private static IEnumerable<int> SliceIndices(int length, JinjaNumber? startValue, JinjaNumber? stopValue, JinjaNumber? stepValue)
    {
        double step = stepValue?.Value ?? 1;
        if (step == 0) yield break; // the reference returns nothing where Python raises
        double start, stop;
        if (step > 0)
        {
            start = startValue?.Value ?? 0;
            start = start < 0 ? Math.Max(length + start, 0) : Math.Min(start, length);
            stop = stopValue?.Value ?? length;
            stop = stop < 0 ? Math.Max(length + stop, 0) : Math.Min(stop, length);
            for (double i = start; i < stop; i += step) yield return (int)i;
        }
        else
        {
            start = startValue?.Value ?? length - 1;
            start = start < 0 ? Math.Max(length + start, -1) : Math.Min(start, length - 1);
            stop = stopValue?.Value ?? -1;
            stop = stop < -1 ? Math.Max(length + stop, -1) : Math.Min(stop, length - 1);
            for (double i = start; i > stop; i += step) yield return (int)i;
        }
    }
}

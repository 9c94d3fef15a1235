namespace LoraRuntime.Layers.Adapters;

/// <summary>
/// Adapters attached to a model by target names, as PEFT's LoraModel: <see cref="AddAdapter"/> resolves a
/// <see cref="LoraConfig"/>'s targets against the model's <see cref="ILinearHost.LinearTargets"/>, applies its rank and
/// α patterns per module path, and creates one <see cref="LoraAdapter"/> over the matched modules. Activating,
/// disabling, merging and unmerging act on every module.
/// </summary>
internal sealed class LoraModel : IDisposable
{
    private readonly ILinearHost _host;
    private readonly Dictionary<string, LoraLinear> _modules = new(StringComparer.Ordinal);
    private readonly List<LoraAdapter> _adapters = [];

    /// <summary>A model with no adapters yet.</summary>
    public LoraModel(ILinearHost host)
    {
        ArgumentNullException.ThrowIfNull(host);
        _host = host;
    }

    /// <summary>The model the adapters attach to.</summary>
    public ILinearHost Host => _host;

    /// <summary>The LoRA modules created so far, by module path.</summary>
    public IReadOnlyDictionary<string, LoraLinear> Modules => _modules;

    /// <summary>The adapters, in the order they were added.</summary>
    public IReadOnlyList<LoraAdapter> Adapters => _adapters;

    /// <summary>The adapter called <paramref name="name"/>.</summary>
    public LoraAdapter this[string name] => _adapters.Find(a => a.Name == name)
        ?? throw new ArgumentException($"name: no adapter '{name}'; the model has {string.Join(", ", _adapters.Select(a => "'" + a.Name + "'"))}", nameof(name));

    /// <summary>
    /// Creates adapter <paramref name="name"/> on every projection <paramref name="config"/> targets. Unknown target
    /// names, a target list that matches nothing, overlapping targets (q and qkv) and bad per-module options are
    /// reported before anything changes.
    /// </summary>
    public LoraAdapter AddAdapter(string name, LoraConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var targets = _host.LinearTargets.ToList();
        CheckTargetNames(config, targets);
        var selected = targets.Where(config.Targets).ToList();
        CheckNoOverlap(selected);
        var options = selected.Select(t => config.OptionsFor(t.Path)).ToList();
        var pairs = selected.Select((t, i) => (Module: ModuleFor(t), Options: options[i])).ToList();
        LoraAdapter adapter;
        try
        {
            var activations = _host.Activations;
            adapter = LoraAdapter.Create(name, pairs, activations.MaxBatch, activations.MaxTime, activations.Training);
        }
        catch
        {
            // Modules created for this call only and left empty are detached again.
            foreach (var (module, _) in pairs.Where(p => p.Module.Adapters.Count == 0)) Forget(module);
            throw;
        }
        _adapters.Add(adapter);
        return adapter;
    }

    /// <summary>Makes <paramref name="name"/> the active adapter of every module that has it.</summary>
    public void SetActiveAdapter(string name)
    {
        foreach (var weights in this[name].Modules) weights.Module.SetActiveAdapter(name);
    }

    /// <summary>Turns every module's adapters off (unmerging first).</summary>
    public void DisableAdapters()
    {
        foreach (var module in _modules.Values) module.DisableAdapters();
    }

    /// <summary>Turns every module's adapters back on.</summary>
    public void EnableAdapters()
    {
        foreach (var module in _modules.Values) module.EnableAdapters();
    }

    /// <summary>Merges an adapter (each module's active one by default) into the base weights; see <see cref="LoraLinear.Merge"/>.</summary>
    public void Merge(string? adapterName = null, bool safe = false)
    {
        // A factored layer (a compressed model) has no dense weight: refuse before any module is merged.
        foreach (var module in _modules.Values)
            if (module.Base.IsFactored && (adapterName is null ? module.Active is not null : module.Find(adapterName) is not null))
                throw new InvalidOperationException(
                    $"{module.Path}: cannot merge into {module.Base.Name}, which is factored (a compressed model, rank {module.Base.FactoredRank}) and has no dense weight; nothing was merged");
        foreach (var module in _modules.Values)
            if (adapterName is null ? module.Active is not null : module.Find(adapterName) is not null) module.Merge(adapterName, safe);
    }

    /// <summary>Unmerges every module.</summary>
    public void Unmerge()
    {
        foreach (var module in _modules.Values) module.Unmerge();
    }

    /// <summary>Disposes every adapter (the base weights are unmerged first).</summary>
    public void Dispose()
    {
        foreach (var adapter in _adapters) adapter.Dispose();
        _adapters.Clear();
    }

    private LoraLinear ModuleFor(LinearTarget target)
    {
        if (_modules.TryGetValue(target.Path, out var module)) return module;
        module = new LoraLinear(target.Linear, target.Path, target.OutputOffset, target.OutputFeatures);
        _modules.Add(target.Path, module);
        return module;
    }

    private void Forget(LoraLinear module)
    {
        _modules.Remove(module.Path);
        module.Base.Detach(module);
    }

    private static void CheckTargetNames(LoraConfig config, List<LinearTarget> targets)
    {
        var names = config.TargetModules;
        if (names.Count == 0)
            throw new ArgumentException($"TargetModules: expected at least one target name (e.g. q, v) or {LoraConfig.AllLinear}", nameof(config.TargetModules));
        if (names is [LoraConfig.AllLinear]) return;
        foreach (string name in names)
        {
            if (targets.Any(t => LoraConfig.Selects(name, t.Path))) continue;
            string known = string.Join(", ", targets.Select(t => t.ShortName).Distinct());
            throw new ArgumentException(
                $"TargetModules: '{name}' matches no module of the model; known targets are {known} (or a path such as {targets.FirstOrDefault()?.Path}, or {LoraConfig.AllLinear})",
                nameof(config.TargetModules));
        }
    }

    private static void CheckNoOverlap(List<LinearTarget> selected)
    {
        for (int i = 0; i < selected.Count; i++)
            for (int j = i + 1; j < selected.Count; j++)
            {
                LinearTarget a = selected[i], b = selected[j];
                if (a.Linear == b.Linear && a.OutputOffset < b.OutputOffset + b.OutputFeatures && b.OutputOffset < a.OutputOffset + a.OutputFeatures)
                    throw new ArgumentException(
                        $"TargetModules: {a.Path} and {b.Path} overlap (both adapt rows of {a.Linear.Name}); target one or the other", "TargetModules");
            }
    }
}

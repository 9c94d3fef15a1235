namespace LoraRuntime.Layers.Adapters;

/// <summary>
/// One named adapter across a set of LoRA modules (PEFT's adapter "default"): every module's A, B (and DoRA
/// magnitude) in one <see cref="ParameterSet"/> with gradients, so that zeroing them is one Fill and AdamW steps
/// them in one call, and the activations its passes keep in one reservation for the model's maximum (B, T).
/// Disposing it removes it from its modules.
/// </summary>
internal sealed class LoraAdapter : IDisposable, Training.IDropoutLayers
{
    private readonly List<LoraWeights> _modules = [];
    private bool _disposed;

    private LoraAdapter(string name, Backend backend, int maxBatch, int maxTime, bool training)
    {
        Name = name;
        Parameters = new ParameterSet(backend, $"lora '{name}'");
        Activations = new Activations(backend, maxBatch, maxTime, training, $"lora '{name}' activations");
        Training = training;
    }

    /// <summary>The adapter's name.</summary>
    public string Name { get; }

    /// <summary>Every trained value of the adapter, with gradients.</summary>
    public ParameterSet Parameters { get; }

    /// <summary>The activations the adapter's passes keep.</summary>
    public Activations Activations { get; }

    /// <summary>The adapter's weights on each module.</summary>
    public IReadOnlyList<LoraWeights> Modules => _modules;

    /// <summary>Training mode: dropout is applied (PEFT's module.training). Set false for evaluation.</summary>
    public bool Training { get; set; }

    /// <summary>
    /// The row of the global batch that this process's row 0 is (0 in one process): a data-parallel rank draws the
    /// dropout mask of its rows of the global batch, so masks do not depend on the number of ranks.
    /// </summary>
    public int BatchFirstRow { get; set; }

    /// <summary>Training forward passes so far, the counter each module's dropout masks are drawn from (set by a resumed trainer).</summary>
    public long TrainingPasses
    {
        get => _modules.Count == 0 ? 0 : (long)_modules[0].TrainingPasses;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            foreach (var module in _modules) module.TrainingPasses = (ulong)value;
        }
    }

    /// <summary>
    /// Creates adapter <paramref name="name"/> on each (module, options) pair: validates everything first (a frozen,
    /// reserved base; 1 ≤ R ≤ min(in, out); a finite α; dropout in [0, 1); DoRA without dropout;
    /// a name new to each module), then reserves, initialises and attaches. Activations are reserved for batches of up
    /// to <paramref name="maxBatch"/> × <paramref name="maxTime"/>; without <paramref name="training"/>, for inference.
    /// </summary>
    public static LoraAdapter Create(string name, IReadOnlyList<(LoraLinear Module, LoraOptions Options)> targets, int maxBatch, int maxTime,
        bool training = true)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(targets);
        if (targets.Count == 0) throw new ArgumentException("targets: an adapter needs at least one module", nameof(targets));
        var backend = targets[0].Module.Base.Owner.Backend;
        foreach (var (module, options) in targets) Validate(name, module, options, backend);
        if (targets.Select(t => t.Module).Distinct().Count() != targets.Count)
            throw new ArgumentException("targets: a module is listed twice", nameof(targets));

        var adapter = new LoraAdapter(name, backend, maxBatch, maxTime, training);
        try
        {
            long directionLength = targets.Where(t => t.Options.UseDora).Select(t => (long)t.Module.OutFeatures * t.Module.InFeatures).DefaultIfEmpty().Max();
            var direction = directionLength == 0 ? null : adapter.Activations.Add("dora.direction", (_, _) => new Shape(checked((int)directionLength)));
            foreach (var (module, options) in targets)
                adapter._modules.Add(new LoraWeights(adapter, module, options, adapter.Parameters, adapter.Activations, direction));
            adapter.Parameters.Reserve(withGradients: true);
            adapter.Activations.Reserve();
            foreach (var weights in adapter._modules) weights.Initialize();
        }
        catch
        {
            adapter.Parameters.Dispose();
            adapter.Activations.Dispose();
            throw;
        }
        foreach (var weights in adapter._modules) weights.Module.Add(weights);
        return adapter;
    }

    /// <summary>Sets every gradient of the adapter to zero.</summary>
    public void ZeroGradients() => Parameters.ZeroGradients();

    /// <summary>Removes the adapter from its modules (unmerging them first where it is merged) and frees its memory.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var weights in _modules) weights.Module.Remove(weights);
        Parameters.Dispose();
        Activations.Dispose();
    }

    private static void Validate(string name, LoraLinear module, LoraOptions options, Backend backend)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(options);
        string path = module.Path;
        var baseSet = module.Base.Owner;
        if (!ReferenceEquals(baseSet.Backend, backend))
            throw new ArgumentException($"targets: {path} is on {baseSet.Backend.Name}, the other modules on {backend.Name}", "targets");
        if (!baseSet.IsReserved || baseSet.HasGradients)
            throw new ArgumentException(
                $"targets: the base of {path} must be frozen: reserve {baseSet.Name} without gradients (Reserve(withGradients: false)) before adding adapters", "targets");
        if (module.Find(name) is not null)
            throw new ArgumentException($"name: {path} already has an adapter called '{name}'", nameof(name));
        int limit = Math.Min(module.InFeatures, module.OutFeatures);
        if (options.Rank <= 0 || options.Rank > limit)
            throw new ArgumentOutOfRangeException("rank", options.Rank,
                $"rank: R must be in 1..{limit} = min(in, out) = min({module.InFeatures}, {module.OutFeatures}) for {path}; got R = {options.Rank}");
        if (!float.IsFinite(options.Alpha))
            throw new ArgumentOutOfRangeException("alpha", options.Alpha, $"alpha: expected a finite α for {path}; got {options.Alpha}");
        if (!(options.Dropout >= 0 && options.Dropout < 1))
            throw new ArgumentOutOfRangeException("dropout", options.Dropout, $"dropout: expected a probability in [0, 1) for {path}; got {options.Dropout}");
        if (module.Base.IsFactored && (options.UseDora || options.Init is LoraInit.Pissa or LoraInit.PissaRandomized or LoraInit.Olora))
            throw new ArgumentException(
                $"targets: {path} is factored (a compressed model, rank {module.Base.FactoredRank}); DoRA and the {options.Init} initialisation need its dense weight", "targets");
        if (options.UseDora && options.Dropout > 0)
            throw new ArgumentException($"useDora: DoRA with dropout (p = {options.Dropout}) is not supported yet for {path}; use dropout 0", "useDora");
    }
}

namespace LoraRuntime.Layers.Adapters;

/// <summary>
/// A LoRA module on a <see cref="Linear"/>, or on a slice of its output rows (q of a fused QKV projection), with
/// PEFT's semantics: y = x Wᵀ + b + s·(dropout(x) Aᵀ) Bᵀ for the active adapter. Several named adapters can live on
/// one module (<see cref="LoraAdapter"/> creates them); one is active, all can be disabled, and any can be merged into
/// the base weight and unmerged again. The base weight and bias are frozen: they are written only by a merge.
/// Constructing the module attaches it to its base layer, whose <see cref="Linear.Forward"/> then applies it.
/// </summary>
internal sealed class LoraLinear
{
    private readonly List<LoraWeights> _adapters = [];
    private readonly List<LoraWeights> _merged = [];
    private LoraWeights? _active;

    /// <summary>
    /// A module on the rows [<paramref name="outputOffset"/>, <paramref name="outputOffset"/> + <paramref name="outputFeatures"/>)
    /// of <paramref name="baseLayer"/>'s weight (all of them by default), called <paramref name="path"/> (the layer's name by default).
    /// </summary>
    public LoraLinear(Linear baseLayer, string? path = null, int outputOffset = 0, int? outputFeatures = null)
    {
        ArgumentNullException.ThrowIfNull(baseLayer);
        int features = outputFeatures ?? baseLayer.OutFeatures - outputOffset;
        if (outputOffset < 0 || features <= 0 || (long)outputOffset + features > baseLayer.OutFeatures)
            throw new ArgumentOutOfRangeException(nameof(outputOffset),
                $"outputOffset: the slice [{outputOffset}, {(long)outputOffset + features}) must be a non-empty part of the {baseLayer.OutFeatures} output features of {baseLayer}");
        path ??= baseLayer.Name;
        if (baseLayer.Adapters.Any(a => a.Path == path))
            throw new ArgumentException($"path: {baseLayer} already has a LoRA module called '{path}'; add adapters to that one", nameof(path));
        Base = baseLayer;
        Path = path;
        OutputOffset = outputOffset;
        OutFeatures = features;
        baseLayer.Attach(this);
    }

    /// <summary>The base layer.</summary>
    public Linear Base { get; }

    /// <summary>The module path ("blocks.0.attn.q").</summary>
    public string Path { get; }

    /// <summary>The first base output feature (weight row) the module adapts.</summary>
    public int OutputOffset { get; }

    /// <summary>out: how many output features the module adapts.</summary>
    public int OutFeatures { get; }

    /// <summary>in: the base layer's input width.</summary>
    public int InFeatures => Base.InFeatures;

    /// <summary>True when the module covers every output feature of its base layer.</summary>
    public bool IsWholeLayer => OutputOffset == 0 && OutFeatures == Base.OutFeatures;

    /// <summary>The adapters on this module, in the order they were added.</summary>
    public IReadOnlyList<LoraWeights> Adapters => _adapters;

    /// <summary>The active adapter's weights, or null when the module has none.</summary>
    public LoraWeights? Active => _active;

    /// <summary>False after <see cref="DisableAdapters"/>: the layer then computes its base alone.</summary>
    public bool Enabled { get; private set; } = true;

    /// <summary>True while any adapter is merged into the base weight.</summary>
    public bool IsMerged => _merged.Count > 0;

    /// <summary>The adapter called <paramref name="name"/>.</summary>
    public LoraWeights this[string name] => Find(name) ?? throw UnknownAdapter(name, nameof(name));

    /// <summary>
    /// Creates adapter <paramref name="name"/> on this module alone (see <see cref="LoraAdapter.Create"/>), with activations
    /// for batches of up to <paramref name="maxBatch"/> × <paramref name="maxTime"/>. The caller disposes it.
    /// </summary>
    public LoraAdapter AddAdapter(string name, LoraOptions options, int maxBatch, int maxTime, bool training = true) =>
        LoraAdapter.Create(name, [(this, options)], maxBatch, maxTime, training);

    /// <summary>output [B, T, OC] = the base layer with its adapters (see <see cref="Linear.Forward"/>).</summary>
    public void Forward(Tensor output, Tensor input) => Base.Forward(output, input);

    /// <summary>The backward pass of the base layer with its adapters (see <see cref="Linear.Backward(Tensor, Tensor, Tensor, bool)"/>).</summary>
    public void Backward(Tensor? dInput, Tensor dOutput, Tensor input) => Base.Backward(dInput, dOutput, input);

    /// <summary>Makes <paramref name="name"/> the adapter that forward and backward passes use.</summary>
    public void SetActiveAdapter(string name) => _active = this[name];

    /// <summary>Turns the adapters off (PEFT's disable_adapters): merged ones are unmerged first.</summary>
    public void DisableAdapters()
    {
        Unmerge();
        Enabled = false;
    }

    /// <summary>Turns the adapters back on.</summary>
    public void EnableAdapters() => Enabled = true;

    /// <summary>
    /// Folds an adapter (the active one by default) into the base weight, exactly to float32 round-off; forward passes
    /// then skip its delta. With <paramref name="safe"/>, the merged rows are computed in a copy first and the merge is
    /// refused, leaving the weight untouched, when they hold NaN or ±∞. Merging a merged adapter does nothing.
    /// </summary>
    public void Merge(string? adapterName = null, bool safe = false)
    {
        var weights = adapterName is null ? _active ?? throw new InvalidOperationException($"{Path}: no adapter to merge") : this[adapterName];
        if (weights.IsMerged) return;
        if (Base.StoredWeight is { } stored)
            throw new InvalidOperationException(
                $"{Path}: the base weight is kept as {stored.Format}; merging into it is explicit: load the base in float32 (dequantized), merge, and save in the type wanted");
        var backend = Base.Weight.Owner.Backend;
        using var rows = Base.Weight.Value.View((long)OutputOffset * InFeatures, new Shape(OutFeatures, InFeatures));
        if (!safe) weights.MergeInto(rows);
        else
        {
            using var copy = backend.Allocate(OutFeatures, InFeatures);
            backend.Copy(copy, rows);
            weights.MergeInto(copy);
            long bad = backend.FindNonFinite(copy);
            if (bad >= 0)
                throw new InvalidOperationException(
                    $"{Path}: merging adapter '{weights.AdapterName}' gives a non-finite weight (element {bad} of the merged [{OutFeatures}, {InFeatures}] rows); the adapter seems broken, and the base weight was left unchanged");
            backend.Copy(rows, copy);
        }
        weights.IsMerged = true;
        _merged.Add(weights);
    }

    /// <summary>Takes every merged adapter back out of the base weight, last merged first.</summary>
    public void Unmerge()
    {
        using var rows = _merged.Count == 0 ? null : Base.Weight.Value.View((long)OutputOffset * InFeatures, new Shape(OutFeatures, InFeatures));
        for (int i = _merged.Count - 1; i >= 0; i--)
        {
            _merged[i].UnmergeFrom(rows!);
            _merged[i].IsMerged = false;
        }
        _merged.Clear();
    }

    /// <summary>Adds the active adapter's delta into output (called by the base layer's forward, before its bias).</summary>
    internal void AddDelta(Tensor output, Tensor input)
    {
        if (Enabled && _active is { IsMerged: false } active) active.Forward(output, input);
    }

    /// <summary>The active adapter's backward pass; returns the output gradient for the base layer.</summary>
    internal Tensor BackwardDelta(Tensor? dInput, Tensor dOutput, Tensor input) =>
        Enabled && _active is { IsMerged: false } active ? active.Backward(dInput, dOutput, input) : dOutput;

    /// <summary>The adapter whose delta applies this pass (enabled, active, not merged), or null.</summary>
    internal LoraWeights? Applied => Enabled && _active is { IsMerged: false } active ? active : null;

    internal LoraWeights? Find(string name) => _adapters.Find(a => a.AdapterName == name);

    /// <summary>Adds an initialised adapter; the first one becomes active.</summary>
    internal void Add(LoraWeights weights)
    {
        _adapters.Add(weights);
        _active ??= weights;
    }

    /// <summary>Removes an adapter (unmerging everything first if it is merged).</summary>
    internal void Remove(LoraWeights weights)
    {
        if (weights.IsMerged) Unmerge();
        _adapters.Remove(weights);
        if (_active == weights) _active = _adapters.Count > 0 ? _adapters[0] : null;
    }

    private ArgumentException UnknownAdapter(string name, string argument) => new(
        $"{argument}: {Path} has no adapter '{name}'; it has {(_adapters.Count == 0 ? "none" : string.Join(", ", _adapters.Select(a => "'" + a.AdapterName + "'")))}",
        argument);

    /// <inheritdoc/>
    public override string ToString() => $"LoraLinear {Path} [{OutputOffset}, {OutputOffset + OutFeatures}) of {Base}";
}

namespace LoraRuntime.Layers.Serving;

/// <summary>Where one module of a served adapter lives in its block: Aᵀ [in, R] and (s·B)ᵀ [R, out], for output columns [OutOffset, OutOffset + out).</summary>
internal readonly record struct AdapterModule(long OffsetA, long OffsetB, int Rank, int InFeatures, int OutOffset, int OutFeatures);

/// <summary>
/// One adapter in an <see cref="AdapterBank"/>: every module's Aᵀ and (s·B)ᵀ (the scale folded in at load, both transposed
/// so that the decoder's shrink and expand are NN GEMMs) in one host array
/// (the host copy) and, while resident, one pool tensor of the same layout (the device copy). Requests hold it pinned
/// while they run, so it is not evicted under them.
/// </summary>
internal sealed class ServedAdapter
{
    private readonly int[] _firstModule;

    /// <summary>
    /// An adapter whose <paramref name="modules"/> are grouped by the projection they adapt: those of the projection with
    /// <see cref="Linear.Index"/> i are modules[<paramref name="firstModule"/>[i] .. <paramref name="firstModule"/>[i + 1]).
    /// </summary>
    internal ServedAdapter(string name, int id, string? source, float[] host, AdapterModule[] modules, int[] firstModule)
    {
        Name = name;
        Id = id;
        Source = source;
        Host = host;
        Modules = modules;
        _firstModule = firstModule;
        ModuleCount = modules.Length;
        foreach (var m in modules) MaxRank = Math.Max(MaxRank, m.Rank);
    }

    /// <summary>The name requests use.</summary>
    public string Name { get; }

    /// <summary>A number unique within the bank; the decoder groups rows by it.</summary>
    public int Id { get; }

    /// <summary>The directory it was loaded from, when it came from one.</summary>
    public string? Source { get; }

    /// <summary>How many projections it adapts.</summary>
    public int ModuleCount { get; }

    /// <summary>Its largest rank.</summary>
    public int MaxRank { get; }

    /// <summary>Bytes of its device copy.</summary>
    public long Bytes => (long)Host.Length * sizeof(float);

    /// <summary>True while its device copy exists.</summary>
    public bool IsResident => Device is not null;

    /// <summary>The host copy: every Aᵀ and (s·B)ᵀ, laid out as <see cref="Device"/>.</summary>
    internal float[] Host { get; }

    /// <summary>Every module, grouped by the projection it adapts.</summary>
    internal AdapterModule[] Modules { get; }

    /// <summary>How many projections the model it was laid out for has.</summary>
    internal int ProjectionCount => _firstModule.Length - 1;

    /// <summary>The modules on <paramref name="linear"/> (none when the adapter leaves it alone).</summary>
    internal ReadOnlySpan<AdapterModule> ModulesFor(Linear linear)
    {
        int i = linear.Index;
        return Modules.AsSpan(_firstModule[i], _firstModule[i + 1] - _firstModule[i]);
    }

    /// <summary>The device copy, or null while evicted.</summary>
    internal Tensor? Device { get; set; }

    /// <summary>Requests running with it (guarded by the bank's lock).</summary>
    internal int Pins { get; set; }

    /// <summary>The bank's clock at its last use (guarded by the bank's lock).</summary>
    internal long LastUse { get; set; }

    /// <summary>True once unloaded; its memory goes when the last pin does.</summary>
    internal bool Unloaded { get; set; }

    /// <inheritdoc/>
    public override string ToString() => $"adapter '{Name}' ({ModuleCount} modules, R ≤ {MaxRank}, {Bytes} bytes{(IsResident ? ", resident" : "")})";
}

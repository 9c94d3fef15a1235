namespace LoraRuntime.Layers.Serving;

/// <summary>A snapshot of the counters of a <see cref="LoraRuntime.Hosting.LoraEngine"/>'s adapters (<see cref="LoraRuntime.Hosting.EngineStats.Adapters"/>).</summary>
/// <param name="Loaded">Adapters loaded (by name).</param>
/// <param name="Resident">Adapters with a device copy.</param>
/// <param name="ResidentBytes">Bytes of the device copies.</param>
/// <param name="BudgetBytes">The most <paramref name="ResidentBytes"/> may reach.</param>
/// <param name="Uploads">Device copies made (first use and re-uploads after eviction).</param>
/// <param name="Evictions">Device copies dropped to make room.</param>
public readonly record struct AdapterBankStats(int Loaded, int Resident, long ResidentBytes, long BudgetBytes, long Uploads, long Evictions);

/// <summary>
/// The adapters a server holds, by name: loaded and unloaded at run time, of any ranks up to <see cref="MaxRank"/>, their
/// scales folded into B at load (A and B stored transposed for the decoder's NN GEMMs). Each keeps a host copy; a device
/// copy (a tensor from the backend's pool) is made when a
/// request needs it and kept while the resident copies fit in the memory budget; past it the least recently used adapter
/// no request is running with is evicted (its pool memory returned) and re-uploaded at its next use. Thread-safe.
/// </summary>
internal sealed class AdapterBank : IDisposable
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, ServedAdapter> _byName = new(StringComparer.Ordinal);
    private readonly List<ServedAdapter> _resident = [];
    private long _clock, _residentBytes, _uploads, _evictions;
    private int _nextId;
    private bool _disposed;

    /// <summary>A bank for <paramref name="layout"/>'s model with a device budget of <paramref name="budgetBytes"/> and ranks up to <paramref name="maxRank"/>.</summary>
    public AdapterBank(ServingLayout layout, long budgetBytes, int maxRank = 64)
    {
        ArgumentNullException.ThrowIfNull(layout);
        if (budgetBytes <= 0) throw new ArgumentOutOfRangeException(nameof(budgetBytes), budgetBytes, $"budgetBytes: expected a budget > 0 bytes; got {budgetBytes}");
        Guard.Positive(maxRank, nameof(maxRank));
        Layout = layout;
        BudgetBytes = budgetBytes;
        MaxRank = maxRank;
    }

    /// <summary>The most adapters loaded at once (resident or not); past it a load is refused (<see cref="AdapterBankFullException"/>).</summary>
    public int MaxAdapters
    {
        get => _maxAdapters;
        init => _maxAdapters = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, $"MaxAdapters: expected ≥ 1; got {value}");
    }

    /// <summary>The most bytes the loaded adapters' host copies may take together (the budget caps only the resident ones).</summary>
    public long MaxHostBytes
    {
        get => _maxHostBytes;
        init => _maxHostBytes = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, $"MaxHostBytes: expected ≥ 1; got {value}");
    }

    private readonly int _maxAdapters = int.MaxValue;
    private readonly long _maxHostBytes = long.MaxValue;
    private long _hostBytes;

    /// <summary>The model's layout the adapters are laid out for.</summary>
    public ServingLayout Layout { get; }

    /// <summary>The most bytes the resident copies may take.</summary>
    public long BudgetBytes { get; }

    /// <summary>The largest rank accepted.</summary>
    public int MaxRank { get; }

    private Backend Backend => Layout.Model.Parameters.Backend;

    /// <summary>The loaded adapters' names, sorted.</summary>
    public IReadOnlyList<string> Names
    {
        get
        {
            lock (_lock) return _byName.Keys.Order(StringComparer.Ordinal).ToArray();
        }
    }

    /// <summary>A consistent snapshot of the counters.</summary>
    public AdapterBankStats Stats
    {
        get
        {
            lock (_lock) return new AdapterBankStats(_byName.Count, _resident.Count, _residentBytes, BudgetBytes, _uploads, _evictions);
        }
    }

    /// <summary>Loads the PEFT adapter in <paramref name="directory"/> as <paramref name="name"/> (see <see cref="AdapterWeights.ReadPeft"/>).</summary>
    public ServedAdapter Load(string name, string directory)
    {
        CheckName(name);
        lock (_lock) CheckRoomLocked(0); // before the files are read
        return Add(name, AdapterWeights.ReadPeft(Layout, directory), directory);
    }

    /// <summary>
    /// Adds an adapter from its modules as <paramref name="name"/>: checks every module against the model (path, shapes,
    /// rank ≤ <see cref="MaxRank"/>, no two on overlapping outputs, a size within the budget) and folds each scale into its B.
    /// </summary>
    public ServedAdapter Add(string name, IReadOnlyList<AdapterModuleWeights> modules, string? source = null)
    {
        CheckName(name);
        ArgumentNullException.ThrowIfNull(modules);
        if (modules.Count == 0) throw new ArgumentException("modules: an adapter needs at least one module", nameof(modules));
        var placed = new List<(LinearTarget Target, AdapterModuleWeights Weights)>(modules.Count);
        foreach (var m in modules)
        {
            if (!Layout.TryFind(m.Path, out var target))
                throw new ArgumentException($"modules: '{m.Path}' is not a projection of the model (e.g. {Layout.Targets.First().Path})", nameof(modules));
            if (m.Rank < 1 || m.Rank > MaxRank)
                throw new ArgumentException($"modules: {m.Path} has rank R = {m.Rank}; this bank serves 1 ≤ R ≤ {MaxRank} (raise --max-rank)", nameof(modules));
            if (m.A.Length != (long)m.Rank * target.Linear.InFeatures || m.B.Length != (long)target.OutputFeatures * m.Rank)
                throw new ArgumentException(
                    $"modules: {m.Path} needs A [{m.Rank}, {target.Linear.InFeatures}] and B [{target.OutputFeatures}, {m.Rank}]; got {m.A.Length} and {m.B.Length} elements", nameof(modules));
            if (!float.IsFinite(m.Scale)) throw new ArgumentException($"modules: {m.Path} has a non-finite scale {m.Scale}", nameof(modules));
            foreach (var (other, _) in placed)
                if (other.Linear == target.Linear && Overlap(target, other))
                    throw new ArgumentException($"modules: {m.Path} and {other.Path} adapt overlapping outputs of {target.Linear.Name}", nameof(modules));
            placed.Add((target, m));
        }
        // Grouped by the projection they adapt (in the model's order), each projection's modules by output offset.
        placed.Sort((x, y) => x.Target.Linear.Index != y.Target.Linear.Index
            ? x.Target.Linear.Index.CompareTo(y.Target.Linear.Index)
            : x.Target.OutputOffset.CompareTo(y.Target.OutputOffset));
        var table = new AdapterModule[placed.Count];
        var firstModule = new int[Layout.Linears.Count + 1];
        long length = 0;
        for (int i = 0; i < placed.Count; i++)
        {
            var (target, m) = placed[i];
            table[i] = new AdapterModule(length, length + m.A.Length, m.Rank, target.Linear.InFeatures, target.OutputOffset, target.OutputFeatures);
            firstModule[target.Linear.Index + 1]++;
            length += m.A.Length + m.B.Length;
        }
        for (int i = 0; i < Layout.Linears.Count; i++) firstModule[i + 1] += firstModule[i];
        if (length * sizeof(float) > BudgetBytes)
            throw new ArgumentException($"modules: the adapter takes {length * sizeof(float)} bytes, more than the whole budget of {BudgetBytes} bytes", nameof(modules));
        var host = new float[length];
        for (int i = 0; i < placed.Count; i++)
        {
            var m = placed[i].Weights;
            var slot = table[i];
            // Aᵀ [in, R] from A [R, in]; (s·B)ᵀ [R, out] from B [out, R].
            int rank = m.Rank, inFeatures = slot.InFeatures, outFeatures = slot.OutFeatures;
            var a = host.AsSpan((int)slot.OffsetA, m.A.Length);
            for (int r = 0; r < rank; r++)
                for (int j = 0; j < inFeatures; j++) a[j * rank + r] = m.A[r * inFeatures + j];
            var b = host.AsSpan((int)slot.OffsetB, m.B.Length);
            for (int o = 0; o < outFeatures; o++)
                for (int r = 0; r < rank; r++) b[r * outFeatures + o] = m.Scale * m.B[o * rank + r];
        }
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_byName.ContainsKey(name)) throw new ArgumentException($"name: an adapter called '{name}' is already loaded; unload it first", nameof(name));
            CheckRoomLocked(length * sizeof(float));
            var adapter = new ServedAdapter(name, ++_nextId, source, host, table, firstModule);
            _byName.Add(name, adapter);
            _hostBytes += length * sizeof(float);
            return adapter;
        }
    }

    /// <summary>Removes <paramref name="name"/>; running requests finish with it, then its memory is returned. False when unknown.</summary>
    public bool Unload(string name)
    {
        lock (_lock)
        {
            if (!_byName.Remove(name, out var adapter)) return false;
            _hostBytes -= adapter.Host.Length * (long)sizeof(float);
            adapter.Unloaded = true;
            if (adapter.Pins == 0) DropLocked(adapter);
            return true;
        }
    }

    /// <summary>The adapter called <paramref name="name"/>, if loaded.</summary>
    public bool TryGet(string name, out ServedAdapter adapter)
    {
        lock (_lock) return _byName.TryGetValue(name, out adapter!);
    }

    /// <summary>
    /// Pins <paramref name="name"/> for a request and makes it resident, evicting the least recently used unpinned adapters
    /// as the budget needs. Returns null when the pinned adapters leave no room now (retry once a request finishes);
    /// throws an <see cref="ArgumentException"/> naming the adapter when none is loaded under that name.
    /// </summary>
    public ServedAdapter? TryAcquire(string name)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_byName.TryGetValue(name, out var adapter))
                throw new ArgumentException($"model: no adapter '{name}' is loaded; loaded: {(_byName.Count == 0 ? "none" : string.Join(", ", _byName.Keys.Order()))}", "model");
            if (!adapter.IsResident && !MakeRoomLocked(adapter.Bytes)) return null;
            if (!adapter.IsResident)
            {
                var device = Backend.Allocate(DType.F32, new Shape(adapter.Host.Length));
                Backend.Upload(device, adapter.Host);
                adapter.Device = device;
                _resident.Add(adapter);
                _residentBytes += adapter.Bytes;
                _uploads++;
            }
            adapter.Pins++;
            adapter.LastUse = ++_clock;
            return adapter;
        }
    }

    /// <summary>Unpins an adapter from <see cref="TryAcquire"/>.</summary>
    public void Release(ServedAdapter adapter)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        lock (_lock)
        {
            if (adapter.Pins <= 0) throw new InvalidOperationException($"{adapter} is not pinned");
            adapter.Pins--;
            adapter.LastUse = ++_clock;
            if (adapter.Pins == 0 && (adapter.Unloaded || _disposed)) DropLocked(adapter);
        }
    }

    /// <summary>Returns every device copy; pinned ones go when released.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            foreach (var adapter in _resident.ToArray())
                if (adapter.Pins == 0) DropLocked(adapter);
            _byName.Clear();
        }
    }

    private bool MakeRoomLocked(long bytes)
    {
        while (_residentBytes + bytes > BudgetBytes)
        {
            ServedAdapter? victim = null;
            foreach (var a in _resident)
                if (a.Pins == 0 && (victim is null || a.LastUse < victim.LastUse)) victim = a;
            if (victim is null) return false;
            DropLocked(victim);
            _evictions++;
        }
        return true;
    }

    private void DropLocked(ServedAdapter adapter)
    {
        if (adapter.Device is null) return;
        adapter.Device.Dispose();
        adapter.Device = null;
        _resident.Remove(adapter);
        _residentBytes -= adapter.Bytes;
    }

    private static bool Overlap(LinearTarget a, LinearTarget b) =>
        a.OutputOffset < b.OutputOffset + b.OutputFeatures && b.OutputOffset < a.OutputOffset + a.OutputFeatures;

    private void CheckRoomLocked(long bytes)
    {
        if (_byName.Count >= _maxAdapters)
            throw new AdapterBankFullException($"the bank holds its maximum of {_maxAdapters} adapters; unload one first");
        if (_hostBytes + bytes > _maxHostBytes)
            throw new AdapterBankFullException(
                $"the adapter's {bytes:N0} bytes would take the loaded adapters past their limit of {_maxHostBytes:N0} bytes ({_hostBytes:N0} in use); unload one first");
    }

    /// <summary>
    /// A name is 1 to 64 of A–Z, a–z, 0–9, '.', '_', '-' and ':', starting with a letter or a digit: it travels in URLs
    /// and logs, so no path separators, dot names, spaces, controls or look-alike and direction-changing characters.
    /// </summary>
    private static void CheckName(string name)
    {
        ArgumentNullException.ThrowIfNull(name, nameof(name));
        bool ok = name.Length is >= 1 and <= 64 && char.IsAsciiLetterOrDigit(name[0])
            && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' or ':');
        if (!ok)
            throw new ArgumentException(
                $"name: expected 1 to 64 of A-Z, a-z, 0-9, '.', '_', '-', ':' starting with a letter or digit; got \"{Printable(name)}\"", nameof(name));
    }

    /// <summary>The name as it can be shown: controls and non-ASCII as \uXXXX, at most 80 characters.</summary>
    private static string Printable(string name)
    {
        var sb = new System.Text.StringBuilder();
        foreach (char c in name.Length > 80 ? name[..80] : name) sb.Append(c is >= ' ' and <= '~' ? c.ToString() : $"\\u{(int)c:X4}");
        return name.Length > 80 ? sb + "…" : sb.ToString();
    }
}

/// <summary>The bank holds as many adapters, or as many bytes of them, as it may: unload one first.</summary>
internal sealed class AdapterBankFullException(string message) : InvalidOperationException(message);

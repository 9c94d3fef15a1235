namespace LoraRuntime.Layers;

/// <summary>
/// The activations (and, for training, activation gradients) of a model, reserved for a maximum batch B and sequence
/// length T in one <see cref="Reservation"/>. Layers declare buffers whose shape is a function of (B, T) while they
/// are built; after <see cref="Reserve"/> a forward or backward pass asks each buffer for its view at the actual
/// (B, T). Views are cached, so passes at a steady (B, T) allocate nothing. An inference set (training: false) reserves
/// nothing up front: its buffers serve only whole-sequence passes, and each is taken from the pool at its first use.
/// Not thread-safe: one pass at a time.
/// </summary>
internal sealed class Activations : IDisposable
{
    private readonly Reservation _reservation;
    private readonly List<Tensor> _onDemand = [];
    private readonly Dictionary<string, List<Region>> _shared = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Func<Tensor>> _sharedOnDemand = new(StringComparer.Ordinal);
    private long _onDemandBytes;

    /// <summary>
    /// An empty set for batches of up to <paramref name="maxBatch"/> sequences of up to <paramref name="maxTime"/>
    /// positions. Without <paramref name="training"/>, gradient buffers take no memory and backward passes are refused.
    /// </summary>
    public Activations(Backend backend, int maxBatch, int maxTime, bool training = true, string name = "activations")
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxBatch);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxTime);
        _reservation = new Reservation(backend, name);
        MaxBatch = maxBatch;
        MaxTime = maxTime;
        Training = training;
    }

    /// <summary>The backend the buffers live on.</summary>
    public Backend Backend => _reservation.Backend;

    /// <summary>The largest batch a pass may have.</summary>
    public int MaxBatch { get; }

    /// <summary>The longest sequence a pass may have.</summary>
    public int MaxTime { get; }

    /// <summary>True when gradient buffers are reserved (backward passes allowed).</summary>
    public bool Training { get; }

    /// <summary>Bytes of all buffers: reserved (or to be), or for an inference set taken at a whole-sequence pass's first use.</summary>
    public long Bytes => _reservation.Bytes + _onDemandBytes;

    /// <summary>True once <see cref="Reserve"/> has run.</summary>
    public bool IsReserved => _reservation.IsReserved;

    /// <summary>
    /// Declares a forward activation whose shape at (B, T) is <paramref name="shapeOf"/>(B, T): part of the reservation
    /// in a training set; in an inference set taken from the pool at the first pass that asks for it, since only
    /// whole-sequence passes use it — serving and generation steps carry their own buffers — so a model loaded to
    /// generate or serve does not hold every layer's activations for its whole context.
    /// </summary>
    public ActivationBuffer Add(string name, Func<int, int, Shape> shapeOf) => Training ? Declare(name, shapeOf, gradient: false) : OnDemand(name, shapeOf);

    /// <summary>Declares a buffer used only by backward passes: it takes memory only when <see cref="Training"/>.</summary>
    public ActivationBuffer AddGradient(string name, Func<int, int, Shape> shapeOf) => Declare(name, shapeOf, gradient: true);

    /// <summary>
    /// Declares a gradient buffer in the memory of <paramref name="spent"/>, an activation no longer read once the
    /// backward pass writes this one (the logits, once the loss's probabilities exist, give way to their gradient). In
    /// an inference set it takes no memory, as every gradient buffer.
    /// </summary>
    public ActivationBuffer AddGradientOver(ActivationBuffer spent, string name, Func<int, int, Shape> shapeOf)
    {
        ArgumentNullException.ThrowIfNull(spent);
        if (!Training || spent.Region is not { } region) return Declare(name, shapeOf, gradient: true);
        if (shapeOf(MaxBatch, MaxTime).Length > region.Length)
            throw new ArgumentException($"shapeOf: {name} is larger than {spent.Name}, whose memory it reuses", nameof(shapeOf));
        return new ActivationBuffer(_reservation, region, shapeOf, reserved: true);
    }

    /// <summary>
    /// Declares a backward-pass scratch that every layer declaring the same <paramref name="role"/> shares: one region
    /// (one per distinct size, the first large enough taken) instead of one per layer. For the gradients a block keeps
    /// only inside its own backward pass, writing each before reading it: blocks run backward one after another, so a
    /// model of L blocks holds one block's gradient scratch rather than L (about a quarter of a training step's
    /// activations). Takes memory only when <see cref="Training"/>.
    /// </summary>
    public ActivationBuffer AddSharedGradient(string role, Func<int, int, Shape> shapeOf) =>
        Shared("gradient " + role, shapeOf, Training ? shapeOf(MaxBatch, MaxTime).Length : 0, Training);

    /// <summary>
    /// Declares a forward-pass scratch that every layer declaring the same <paramref name="role"/> shares: a buffer a
    /// layer writes and reads inside its own forward pass and no backward pass reads (a branch's output before the
    /// residual sum), so blocks run one after another can use the same memory. In an inference set it is taken at its
    /// first use, once for all layers.
    /// </summary>
    public ActivationBuffer AddSharedScratch(string role, Func<int, int, Shape> shapeOf)
    {
        ArgumentException.ThrowIfNullOrEmpty(role);
        long length = shapeOf(MaxBatch, MaxTime).Length;
        if (Training) return Shared("scratch " + role, shapeOf, length, reserved: true);
        if (!_sharedOnDemand.TryGetValue(role, out var block))
        {
            Tensor? taken = null;
            _onDemandBytes += length * sizeof(float);
            _sharedOnDemand[role] = block = () =>
            {
                if (taken is null)
                {
                    taken = Backend.Allocate(DType.F32, new Shape(checked((int)length)));
                    _onDemand.Add(taken);
                }
                return taken;
            };
        }
        return new ActivationBuffer("shared scratch " + role, shapeOf, block);
    }

    /// <summary>One region per role and size: the first declared that is large enough, else a new one.</summary>
    private ActivationBuffer Shared(string role, Func<int, int, Shape> shapeOf, long length, bool reserved)
    {
        ArgumentException.ThrowIfNullOrEmpty(role);
        if (!_shared.TryGetValue(role, out var regions)) _shared[role] = regions = [];
        foreach (var region in regions)
            if (region.Length >= length) return new ActivationBuffer(_reservation, region, shapeOf, reserved);
        var added = _reservation.Declare(regions.Count == 0 ? "shared " + role : $"shared {role} #{regions.Count + 1}", length);
        regions.Add(added);
        return new ActivationBuffer(_reservation, added, shapeOf, reserved);
    }

    private ActivationBuffer OnDemand(string name, Func<int, int, Shape> shapeOf)
    {
        long length = shapeOf(MaxBatch, MaxTime).Length;
        _onDemandBytes += length * sizeof(float);
        return new ActivationBuffer(name, shapeOf, () =>
        {
            var block = Backend.Allocate(DType.F32, new Shape(checked((int)length)));
            _onDemand.Add(block);
            return block;
        });
    }

    /// <summary>Takes the block (zero-filled) once every buffer is declared.</summary>
    public void Reserve() => _reservation.Reserve();

    /// <summary>
    /// Throws an <see cref="ArgumentException"/> naming <paramref name="argument"/> when (B, T) exceed the reserved
    /// maxima or are not positive.
    /// </summary>
    public void CheckSize(int batch, int time, string argument, Tensor tensor)
    {
        if (batch < 1 || batch > MaxBatch)
            throw new ArgumentException(
                $"{argument}: batch B = {batch} (from {argument} {tensor.Shape}) must be in 1..{MaxBatch}, the maximum B reserved for", argument);
        if (time < 1 || time > MaxTime)
            throw new ArgumentException(
                $"{argument}: sequence length T = {time} (from {argument} {tensor.Shape}) must be in 1..{MaxTime}, the maximum T reserved for", argument);
    }

    /// <summary>Returns the block (and any buffer taken on demand) to the pool.</summary>
    public void Dispose()
    {
        _reservation.Dispose();
        foreach (var t in _onDemand) t.Dispose();
        _onDemand.Clear();
    }

    private ActivationBuffer Declare(string name, Func<int, int, Shape> shapeOf, bool gradient)
    {
        bool reserved = !gradient || Training;
        long length = reserved ? shapeOf(MaxBatch, MaxTime).Length : 0;
        return new ActivationBuffer(_reservation, _reservation.Declare(name, length), shapeOf, reserved);
    }
}

/// <summary>One activation buffer: its view at the current (B, T), rebuilt only when (B, T) change.</summary>
internal sealed class ActivationBuffer
{
    private readonly Reservation? _reservation;
    private readonly Region? _region;
    private readonly Func<int, int, Shape> _shapeOf;
    private readonly bool _reserved;
    private readonly Func<Tensor>? _allocate; // an on-demand buffer's first use
    private Tensor? _block;
    private Tensor? _view;
    private int _batch, _time;

    internal ActivationBuffer(Reservation reservation, Region region, Func<int, int, Shape> shapeOf, bool reserved)
    {
        _reservation = reservation;
        _region = region;
        _shapeOf = shapeOf;
        _reserved = reserved;
        Name = region.Name;
    }

    internal ActivationBuffer(string name, Func<int, int, Shape> shapeOf, Func<Tensor> allocate)
    {
        _shapeOf = shapeOf;
        _allocate = allocate;
        _reserved = true;
        Name = name;
    }

    /// <summary>The buffer's name.</summary>
    public string Name { get; }

    /// <summary>Its region of the reservation; null for a buffer taken on demand.</summary>
    internal Region? Region => _region;

    /// <summary>The view of shape shapeOf(<paramref name="batch"/>, <paramref name="time"/>) (sizes already checked).</summary>
    public Tensor For(int batch, int time)
    {
        if (_view is not null && batch == _batch && time == _time) return _view;
        if (!_reserved)
            throw new InvalidOperationException($"{Name}: the activations were reserved for inference (training: false); a backward pass needs them reserved for training");
        if (_allocate is not null)
        {
            _block ??= _allocate();
            _view = _block.View(0, _shapeOf(batch, time));
        }
        else _view = _reservation!.View(_region!.Value, _shapeOf(batch, time));
        _batch = batch;
        _time = time;
        return _view;
    }
}

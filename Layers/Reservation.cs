namespace LoraRuntime.Layers;

/// <summary>A named part of a <see cref="Reservation"/>: <see cref="Length"/> elements from element <see cref="Offset"/>.</summary>
/// <param name="Name">The region's name (a parameter's or an activation's path).</param>
/// <param name="Offset">The first element in the reservation's block.</param>
/// <param name="Length">Elements reserved.</param>
internal readonly record struct Region(string Name, long Offset, long Length);

/// <summary>
/// One block of backend memory carved into named regions, llm.c style: every region is declared first, then
/// <see cref="Reserve"/> takes a single zero-filled block from the backend's pool. Clearing everything is one Fill
/// and an optimizer can step the whole block in one call. Regions start on 64-byte boundaries.
/// </summary>
internal sealed class Reservation : IDisposable
{
    /// <summary>Region offsets are multiples of this many elements (64 bytes of float32).</summary>
    public const int Alignment = 16;

    private readonly List<Region> _regions = [];
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private Tensor? _block;

    /// <summary>An empty reservation on <paramref name="backend"/>; <paramref name="name"/> appears in messages.</summary>
    public Reservation(Backend backend, string name)
    {
        ArgumentNullException.ThrowIfNull(backend);
        Backend = backend;
        Name = name;
    }

    /// <summary>The backend the block comes from.</summary>
    public Backend Backend { get; }

    /// <summary>The reservation's name ("parameters", "activations").</summary>
    public string Name { get; }

    /// <summary>Elements declared so far, alignment padding included: the size of the block.</summary>
    public long Length { get; private set; }

    /// <summary>Bytes of the block (<see cref="Length"/> float32 elements).</summary>
    public long Bytes => Length * sizeof(float);

    /// <summary>True once <see cref="Reserve"/> has run.</summary>
    public bool IsReserved => _block is not null;

    /// <summary>The declared regions, in declaration order.</summary>
    public IReadOnlyList<Region> Regions => _regions;

    /// <summary>The whole block, a 1-D tensor of <see cref="Length"/> elements (padding between regions is zero).</summary>
    public Tensor Block => _block ?? throw new InvalidOperationException($"{Name}: not reserved yet; declare every region, then call Reserve()");

    /// <summary>
    /// Declares a region of <paramref name="length"/> elements and returns its offset. Names are unique; declaring after
    /// <see cref="Reserve"/> is an error.
    /// </summary>
    public Region Declare(string name, long length)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (IsReserved)
            throw new InvalidOperationException($"{Name}: cannot declare '{name}' after Reserve(); the block is already taken");
        if (!_names.Add(name))
            throw new ArgumentException($"name: '{name}' is already declared in {Name}", nameof(name));
        var region = new Region(name, Length, length);
        _regions.Add(region);
        Length += (length + Alignment - 1) / Alignment * Alignment;
        return region;
    }

    /// <summary>Takes the block from the pool and zero-fills it. Runs once.</summary>
    public void Reserve()
    {
        if (IsReserved) throw new InvalidOperationException($"{Name}: already reserved");
        var block = Backend.Allocate(DType.F32, new Shape(checked((int)Math.Max(Length, 0))));
        Backend.Fill(block, 0f);
        _block = block;
    }

    /// <summary>A view of <paramref name="region"/> with <paramref name="shape"/> (at most the region's length).</summary>
    public Tensor View(Region region, Shape shape)
    {
        if (shape.Length > region.Length)
            throw new ArgumentException($"shape: {shape} needs {shape.Length} elements; region '{region.Name}' of {Name} has {region.Length}", nameof(shape));
        return Block.View(region.Offset, shape);
    }

    /// <summary>Returns the block to the pool; views of it must no longer be used.</summary>
    public void Dispose() => _block?.Dispose();
}

namespace LoraRuntime;

/// <summary>
/// A row-major, contiguous block of elements on one backend. An owning tensor holds a block from its backend's
/// pool and returns it on <see cref="Dispose"/>; a view (<see cref="View"/>, <see cref="Reshape"/>) shares its
/// root's memory and owns nothing. Operations take tensors as arguments and never allocate them.
/// </summary>
public sealed unsafe class Tensor : IDisposable
{
    private readonly nint _pointer;
    private readonly int _sizeClass;
    private readonly Tensor? _root; // null for an owning tensor
    private bool _disposed;

    internal Tensor(Backend backend, DType dtype, Shape shape, nint pointer, int sizeClass, Tensor? root)
    {
        Backend = backend;
        DType = dtype;
        Shape = shape;
        _pointer = pointer;
        _sizeClass = sizeClass;
        _root = root;
    }

    /// <summary>The backend that owns the memory.</summary>
    public Backend Backend { get; }

    /// <summary>The element type.</summary>
    public DType DType { get; }

    /// <summary>The shape.</summary>
    public Shape Shape { get; }

    /// <summary>Number of elements.</summary>
    public long Length => Shape.Length;

    /// <summary>Number of bytes.</summary>
    public long ByteLength => Shape.Length * DType.SizeInBytes();

    /// <summary>True when this tensor shares another's memory.</summary>
    public bool IsView => _root is not null;

    /// <summary>True once this tensor (or, for a view, its root) has been disposed.</summary>
    public bool IsDisposed => _root?.IsDisposed ?? _disposed;

    /// <summary>The address of element 0 in the backend's address space (host or device).</summary>
    public nint Pointer
    {
        get
        {
            ThrowIfDisposed();
            return _pointer;
        }
    }

    /// <summary>The elements as a span; host-memory backends only.</summary>
    public Span<float> AsSpan() => AsSpanOf<float>(DType.F32);

    /// <summary>The elements of an <see cref="DType.I32"/> tensor as a span; host-memory backends only.</summary>
    public Span<int> AsInt32Span() => AsSpanOf<int>(DType.I32);

    /// <summary>A view of <paramref name="shape"/>.Length elements starting at element <paramref name="offset"/>.</summary>
    public Tensor View(long offset, Shape shape)
    {
        ThrowIfDisposed();
        if (offset < 0 || offset + shape.Length > Length)
            throw new ArgumentOutOfRangeException(nameof(offset),
                $"a view of shape {shape} at offset {offset} needs {offset + shape.Length} elements; tensor of shape {Shape} has {Length}");
        return new Tensor(Backend, DType, shape, _pointer + (nint)(offset * DType.SizeInBytes()), 0, _root ?? this);
    }

    /// <summary>A view of all elements with another shape of the same length.</summary>
    public Tensor Reshape(params ReadOnlySpan<int> dims)
    {
        var shape = new Shape(dims);
        if (shape.Length != Length)
            throw new ArgumentException($"cannot reshape {Shape} ({Length} elements) to {shape} ({shape.Length} elements)", nameof(dims));
        return View(0, shape);
    }

    /// <summary>Copies <paramref name="source"/> into this tensor; lengths must match.</summary>
    public void CopyFrom(ReadOnlySpan<float> source) => Backend.Upload(this, source);

    /// <summary>Copies <paramref name="source"/> into this <see cref="DType.I32"/> tensor; lengths must match.</summary>
    public void CopyFrom(ReadOnlySpan<int> source) => Backend.Upload(this, source);

    /// <summary>Copies this tensor into <paramref name="destination"/>; lengths must match.</summary>
    public void CopyTo(Span<float> destination) => Backend.Download(this, destination);

    /// <summary>The elements as a new array (allocates; for tests and tools, not hot paths).</summary>
    public float[] ToArray()
    {
        var result = new float[checked((int)Length)];
        CopyTo(result);
        return result;
    }

    /// <summary>Returns an owning tensor's block to its pool; a view does nothing.</summary>
    public void Dispose()
    {
        if (_root is not null || _disposed) return;
        _disposed = true;
        if (Length > 0) Backend.Pool.Return(_pointer, _sizeClass);
    }

    /// <inheritdoc/>
    public override string ToString() => $"Tensor({DType}, {Shape}, {Backend.Name}{(IsView ? ", view" : "")})";

    internal void ThrowIfDisposed()
    {
        if (IsDisposed) throw new ObjectDisposedException(nameof(Tensor), $"{this} was disposed");
    }

    private Span<T> AsSpanOf<T>(DType expected) where T : unmanaged
    {
        ThrowIfDisposed();
        if (!Backend.IsHostMemory)
            throw new InvalidOperationException($"{this} lives in device memory; copy it with CopyTo");
        if (DType != expected)
            throw new InvalidOperationException($"{this} has dtype {DType}, not {expected}");
        if (Length > int.MaxValue)
            throw new InvalidOperationException($"{this} has {Length} elements, more than a span can hold");
        return new Span<T>((void*)_pointer, (int)Length);
    }
}

using LoraRuntime.Memory;

namespace LoraRuntime;

/// <summary>The kind of device a backend computes on.</summary>
public enum DeviceKind
{
    /// <summary>The host CPU.</summary>
    Cpu,
    /// <summary>An NVIDIA GPU through CUDA.</summary>
    Cuda,
}

/// <summary>
/// One compute device: its memory pool and exactly the operations the layers need. Public methods are
/// non-virtual: they validate their arguments once (throwing <see cref="ArgumentException"/> that names the
/// argument, what was expected and what was given, before anything is written) and then call a protected
/// core that the device implements. Operations take their outputs first and never allocate tensors.
/// </summary>
public abstract partial class Backend : IDisposable
{
    /// <summary>Creates a backend over <paramref name="pool"/>.</summary>
    protected Backend(MemoryPool pool) => Pool = pool;

    /// <summary>A short name ("cpu", "cuda:0").</summary>
    public abstract string Name { get; }

    /// <summary>The device kind.</summary>
    public abstract DeviceKind Kind { get; }

    /// <summary>True when tensor memory is directly addressable by the host (spans are allowed).</summary>
    public abstract bool IsHostMemory { get; }

    /// <summary>The caching allocator every tensor of this backend comes from.</summary>
    public MemoryPool Pool { get; }

    /// <summary>A tensor of <paramref name="shape"/> with unspecified contents.</summary>
    public Tensor Allocate(DType dtype, Shape shape)
    {
        long bytes = shape.Length * dtype.SizeInBytes();
        if (bytes == 0) return new Tensor(this, dtype, shape, 0, 0, null);
        nint pointer = Pool.Rent(bytes, out int sizeClass);
        return new Tensor(this, dtype, shape, pointer, sizeClass, null);
    }

    /// <summary>An <see cref="DType.F32"/> tensor of the given dimensions with unspecified contents.</summary>
    public Tensor Allocate(params ReadOnlySpan<int> dims) => Allocate(DType.F32, new Shape(dims));

    /// <summary>A zero-filled tensor.</summary>
    public Tensor Zeros(DType dtype, Shape shape)
    {
        var t = Allocate(dtype, shape);
        Fill(t, 0f);
        return t;
    }

    /// <summary>A zero-filled <see cref="DType.F32"/> tensor.</summary>
    public Tensor Zeros(params ReadOnlySpan<int> dims) => Zeros(DType.F32, new Shape(dims));

    /// <summary>A tensor holding a copy of <paramref name="values"/>, shaped by <paramref name="dims"/>.</summary>
    public Tensor FromArray(ReadOnlySpan<float> values, params ReadOnlySpan<int> dims)
    {
        var t = Allocate(DType.F32, new Shape(dims));
        try
        {
            Upload(t, values);
        }
        catch
        {
            t.Dispose();
            throw;
        }
        return t;
    }

    /// <summary>Copies host values into <paramref name="destination"/>.</summary>
    public void Upload(Tensor destination, ReadOnlySpan<float> source)
    {
        Check.Tensor(this, destination, DType.F32, nameof(destination));
        Check.Length(source.Length, destination, nameof(source));
        UploadCore(destination, System.Runtime.InteropServices.MemoryMarshal.AsBytes(source));
    }

    /// <summary>Copies host integers into an <see cref="DType.I32"/> <paramref name="destination"/>.</summary>
    public void Upload(Tensor destination, ReadOnlySpan<int> source)
    {
        Check.Tensor(this, destination, DType.I32, nameof(destination));
        Check.Length(source.Length, destination, nameof(source));
        UploadCore(destination, System.Runtime.InteropServices.MemoryMarshal.AsBytes(source));
    }

    /// <summary>Copies <paramref name="source"/> into host memory.</summary>
    public void Download(Tensor source, Span<float> destination)
    {
        Check.Tensor(this, source, DType.F32, nameof(source));
        Check.Length(destination.Length, source, nameof(destination));
        DownloadCore(source, System.Runtime.InteropServices.MemoryMarshal.AsBytes(destination));
    }

    /// <summary>Copies <paramref name="source"/> into <paramref name="destination"/> (same dtype and length).</summary>
    public void Copy(Tensor destination, Tensor source)
    {
        Check.Tensor(this, destination, source.DType, nameof(destination));
        Check.Tensor(this, source, destination.DType, nameof(source));
        Check.SameLength(destination, nameof(destination), source, nameof(source));
        if (destination.Length > 0) CopyCore(destination, source);
    }

    /// <summary>Sets every element of an <see cref="DType.F32"/> tensor to <paramref name="value"/>.</summary>
    public void Fill(Tensor destination, float value)
    {
        Check.Tensor(this, destination, DType.F32, nameof(destination));
        if (destination.Length > 0) FillCore(destination, value);
    }

    /// <summary>Waits until all queued work is done (a no-op on the CPU).</summary>
    public abstract void Synchronize();

    /// <summary>Host bytes into device memory.</summary>
    protected abstract void UploadCore(Tensor destination, ReadOnlySpan<byte> source);

    /// <summary>Device memory into host bytes.</summary>
    protected abstract void DownloadCore(Tensor source, Span<byte> destination);

    /// <summary>Device-to-device copy of equal lengths.</summary>
    protected abstract void CopyCore(Tensor destination, Tensor source);

    /// <summary>Fill with a constant.</summary>
    protected abstract void FillCore(Tensor destination, float value);

    /// <summary>Releases the backend's resources; tensors must be disposed first.</summary>
    public virtual void Dispose()
    {
        Pool.Dispose();
        GC.SuppressFinalize(this);
    }
}

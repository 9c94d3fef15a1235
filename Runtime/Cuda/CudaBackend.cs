using System.Runtime.CompilerServices;
using LoraRuntime.Interop;
using LoraRuntime.Memory;

namespace LoraRuntime.Cuda;

/// <summary>
/// The CUDA backend: device memory from a caching allocator, one non-blocking stream on which every operation is
/// queued in order, cuBLAS for the GEMM family, cuSOLVER for QR and SVD, and the kernels of native/ (compiled by NVRTC
/// for the device's architecture at first use) for everything else. Operations are asynchronous: a download, a
/// validation that reads device values, and <see cref="Synchronize"/> wait for the stream. Thread-safe: calls from
/// several threads are serialised by a lock (each queues its work and returns); to run in parallel, give each thread
/// its own backend — backends on one device share its context and compiled kernels.
/// </summary>
public sealed unsafe partial class CudaBackend : Backend
{
    private const uint BlockSize = 256;
    private const long StagingBytes = 4L << 20;

    private readonly CudaDevice _device;
    private readonly CudaPinnedMemoryPool _pinned;
    private nint _stream;
    private readonly nint[] _staging = new nint[2];
    private readonly int[] _stagingClass = new int[2];
    private readonly nint[] _stagingDone = new nint[2];
    private nint _scratch, _hostScratch;
    private int _scratchClass, _hostScratchClass;
    private readonly Lock _gate = new();
    private bool _disposed;

    /// <summary>
    /// A backend on device <paramref name="ordinal"/>. Throws <see cref="InvalidOperationException"/> with the probe's
    /// reason when CUDA is unavailable, and <see cref="CudaException"/> or <see cref="CudaLibraryException"/> when the
    /// driver, cuBLAS or cuSOLVER refuse to start.
    /// </summary>
    public CudaBackend(int ordinal = 0) : this(CudaDevice.Get(ordinal)) { }

    private CudaBackend(CudaDevice device) : base(new CudaMemoryPool(device))
    {
        _device = device;
        _pinned = new CudaPinnedMemoryPool(device);
        try
        {
            device.MakeCurrent();
            nint stream;
            CudaDriver.ThrowIfFailed(CudaDriver.cuStreamCreate(&stream, CudaDriver.CU_STREAM_NON_BLOCKING));
            _stream = stream;
            for (int i = 0; i < 2; i++)
            {
                _staging[i] = _pinned.Rent(StagingBytes, out _stagingClass[i]);
                nint done;
                CudaDriver.ThrowIfFailed(CudaDriver.cuEventCreate(&done, CudaDriver.CU_EVENT_DISABLE_TIMING));
                _stagingDone[i] = done;
                CudaDriver.ThrowIfFailed(CudaDriver.cuEventRecord(done, _stream));
            }
            _scratch = Pool.Rent(SizeClasses.MinBlockBytes, out _scratchClass);
            _hostScratch = _pinned.Rent(SizeClasses.MinBlockBytes, out _hostScratchClass);
            CreateBlas();
            CreateSolver();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <inheritdoc/>
    public override string Name => Pool.Name;

    /// <inheritdoc/>
    public override DeviceKind Kind => DeviceKind.Cuda;

    /// <inheritdoc/>
    public override bool IsHostMemory => false;

    /// <summary>The device: name, memory, compute capability.</summary>
    public CudaDeviceInfo Device => _device.Info;

    /// <summary>The CUstream every operation of this backend is queued on.</summary>
    public nint Stream => _stream;

    /// <summary>The pinned host pool the transfers stage through.</summary>
    public MemoryPool PinnedPool => _pinned;

    /// <inheritdoc/>
    public override void Synchronize()
    {
        using var gate = Enter();
        CudaDriver.ThrowIfFailed(CudaDriver.cuStreamSynchronize(_stream));
    }

    /// <summary>
    /// Host bytes to the device through the two pinned staging buffers in turn: a buffer is refilled once the copy out
    /// of it has finished, so the call returns as soon as the last piece is staged (the source may then change).
    /// </summary>
    protected override void UploadCore(Tensor destination, ReadOnlySpan<byte> source)
    {
        using var gate = Enter();
        ulong target = (ulong)destination.Pointer;
        for (int offset = 0, piece = 0; offset < source.Length; piece++)
        {
            int slot = piece & 1, length = (int)Math.Min(StagingBytes, source.Length - offset);
            CudaDriver.ThrowIfFailed(CudaDriver.cuEventSynchronize(_stagingDone[slot]));
            source.Slice(offset, length).CopyTo(new Span<byte>((void*)_staging[slot], length));
            CudaDriver.ThrowIfFailed(CudaDriver.cuMemcpyHtoDAsync(target + (ulong)offset, (void*)_staging[slot], (nuint)length, _stream));
            CudaDriver.ThrowIfFailed(CudaDriver.cuEventRecord(_stagingDone[slot], _stream));
            offset += length;
        }
    }

    /// <summary>Device bytes to the host through a pinned staging buffer, waiting for the stream.</summary>
    protected override void DownloadCore(Tensor source, Span<byte> destination)
    {
        using var gate = Enter();
        ulong from = (ulong)source.Pointer;
        for (int offset = 0; offset < destination.Length;)
        {
            int length = (int)Math.Min(StagingBytes, destination.Length - offset);
            CudaDriver.ThrowIfFailed(CudaDriver.cuMemcpyDtoHAsync((void*)_staging[0], from + (ulong)offset, (nuint)length, _stream));
            CudaDriver.ThrowIfFailed(CudaDriver.cuStreamSynchronize(_stream));
            new ReadOnlySpan<byte>((void*)_staging[0], length).CopyTo(destination.Slice(offset, length));
            offset += length;
        }
    }

    /// <inheritdoc/>
    protected override void CopyCore(Tensor destination, Tensor source)
    {
        using var gate = Enter();
        CudaDriver.ThrowIfFailed(CudaDriver.cuMemcpyDtoDAsync((ulong)destination.Pointer, (ulong)source.Pointer, (nuint)destination.ByteLength, _stream));
    }

    /// <summary>A 32-bit memset with the value's bits: exact for every float, NaN included, and capturable in a graph.</summary>
    protected override void FillCore(Tensor destination, float value)
    {
        using var gate = Enter();
        CudaDriver.ThrowIfFailed(CudaDriver.cuMemsetD32Async((ulong)destination.Pointer, BitConverter.SingleToUInt32Bits(value),
            (nuint)destination.Length, _stream));
    }

    /// <summary>
    /// Takes this backend's lock (re-entrant: a core may call another) and makes the device's context current on the
    /// calling thread; the scope's disposal releases the lock. Every core and transfer starts here.
    /// </summary>
    internal Lock.Scope Enter()
    {
        var scope = _gate.EnterScope();
        try
        {
            _device.MakeCurrent();
        }
        catch
        {
            scope.Dispose();
            throw;
        }
        return scope;
    }

    /// <summary>Launches <paramref name="kernel"/> on this backend's stream: a 1-D grid of 256-thread blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Launch(CudaKernel kernel, uint blocks, void** arguments)
    {
        nint function = _device.Function(kernel);
        CudaDriver.ThrowIfFailed(CudaDriver.cuLaunchKernel(function, blocks, 1, 1, BlockSize, 1, 1, 0, _stream, arguments, null));
    }

    /// <summary>Blocks for a grid-stride loop over <paramref name="count"/> elements (at most 2²⁰ blocks; each loops on).</summary>
    private static uint BlocksFor(long count) => (uint)Math.Clamp((count + BlockSize - 1) / BlockSize, 1, 1 << 20);

    /// <summary>Blocks for one thread per column.</summary>
    private static uint BlocksForColumns(int columns) => (uint)((columns + BlockSize - 1) / BlockSize);

    /// <summary>
    /// The first index that a scan kernel left in the device scratch word (all ones when none), read back with a wait
    /// for the stream; −1 when none.
    /// </summary>
    private long ReadScanResult()
    {
        CudaDriver.ThrowIfFailed(CudaDriver.cuMemcpyDtoHAsync((void*)_hostScratch, (ulong)_scratch, sizeof(ulong), _stream));
        CudaDriver.ThrowIfFailed(CudaDriver.cuStreamSynchronize(_stream));
        ulong first = *(ulong*)_hostScratch;
        return first == ulong.MaxValue ? -1 : (long)first;
    }

    /// <summary>Sets the scratch word to all ones before a scan.</summary>
    private void ResetScanResult() =>
        CudaDriver.ThrowIfFailed(CudaDriver.cuMemsetD32Async((ulong)_scratch, uint.MaxValue, 2, _stream));

    /// <summary>Reads the 4-byte element <paramref name="index"/> of <paramref name="tensor"/> (waits for the stream).</summary>
    private T ReadElement<T>(Tensor tensor, long index) where T : unmanaged
    {
        CudaDriver.ThrowIfFailed(CudaDriver.cuMemcpyDtoHAsync((void*)_hostScratch, (ulong)tensor.Pointer + (ulong)(index * sizeof(T)), (nuint)sizeof(T), _stream));
        CudaDriver.ThrowIfFailed(CudaDriver.cuStreamSynchronize(_stream));
        return *(T*)_hostScratch;
    }

    /// <summary>The address of element <paramref name="offset"/> of a float tensor.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static nint At(Tensor t, long offset) => t.Pointer + (nint)(offset * sizeof(float));

    /// <summary>Waits for the stream, then releases the handles, the stream and the pools; tensors must be disposed first.</summary>
    public override void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        using var gate = Enter();
        if (_stream != 0) CudaDriver.cuStreamSynchronize(_stream);
        DestroySolver();
        DestroyBlas();
        FreeGroupBuffers(waitForStream: false);
        if (_scratch != 0) Pool.Return(_scratch, _scratchClass);
        if (_hostScratch != 0) _pinned.Return(_hostScratch, _hostScratchClass);
        for (int i = 0; i < 2; i++)
        {
            if (_staging[i] != 0) _pinned.Return(_staging[i], _stagingClass[i]);
            if (_stagingDone[i] != 0) CudaDriver.cuEventDestroy(_stagingDone[i]);
        }
        if (_stream != 0) CudaDriver.cuStreamDestroy(_stream);
        _stream = 0;
        _pinned.Dispose();
        base.Dispose();
    }
}

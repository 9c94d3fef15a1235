using LoraRuntime.Interop;
using LoraRuntime.Memory;

namespace LoraRuntime.Cuda;

/// <summary>
/// The caching allocator over device memory. Requests are rounded to the shared <see cref="SizeClasses"/> and freed
/// blocks are cached per class (<see cref="MemoryPool"/>); underneath, PyTorch's two pools: blocks up to 1 MiB are
/// carved from 2 MiB segments (<see cref="SmallBlockSegments"/>), larger ones are their own cuMemAlloc rounded up to
/// 2 MiB. When the device is out of memory the cache is freed and the request retried once, then a clear
/// <see cref="InsufficientMemoryException"/>. Every block is 128-byte aligned.
/// </summary>
public sealed unsafe class CudaMemoryPool : MemoryPool
{
    private const long LargeRounding = 2L << 20;
    private readonly CudaDevice _device;
    private readonly SmallBlockSegments _small;
    private readonly Dictionary<nint, long> _blockBytes = [];
    private long _deviceBytes;

    internal CudaMemoryPool(CudaDevice device)
    {
        _device = device;
        _small = new SmallBlockSegments(DeviceAllocate, DeviceFree);
        Name = $"cuda:{device.Info.Ordinal}";
    }

    /// <inheritdoc/>
    public override string Name { get; }

    /// <summary>Bytes held from the device by cuMemAlloc (segments and large blocks), including rounding.</summary>
    public long DeviceBytesReserved => Interlocked.Read(ref _deviceBytes);

    /// <summary>The 2 MiB segments of the small pool now held.</summary>
    public int SmallSegments => _small.SegmentCount;

    /// <inheritdoc/>
    protected override nint Allocate(long bytes) =>
        bytes <= SmallBlockSegments.MaxBlockBytes ? _small.Allocate(bytes) : DeviceAllocate((bytes + LargeRounding - 1) / LargeRounding * LargeRounding);

    /// <inheritdoc/>
    protected override void Free(nint block)
    {
        if (_small.Owns(block)) _small.Free(block);
        else DeviceFree(block);
    }

    private nint DeviceAllocate(long bytes)
    {
        _device.MakeCurrent();
        ulong pointer;
        CUresult status = CudaDriver.cuMemAlloc(&pointer, (nuint)bytes);
        if (status == CUresult.CUDA_ERROR_OUT_OF_MEMORY) return 0;
        if (status != CUresult.CUDA_SUCCESS) throw new CudaException($"cuMemAlloc_v2({bytes} bytes)", status);
        _blockBytes[(nint)pointer] = bytes;
        Interlocked.Add(ref _deviceBytes, bytes);
        return (nint)pointer;
    }

    private void DeviceFree(nint block)
    {
        _device.MakeCurrent();
        // Freed blocks may still be read by queued work of a stream: let it finish first (Trim and disposal only).
        CudaDriver.ThrowIfFailed(CudaDriver.cuCtxSynchronize());
        CudaDriver.ThrowIfFailed(CudaDriver.cuMemFree((ulong)block));
        if (_blockBytes.Remove(block, out long bytes)) Interlocked.Add(ref _deviceBytes, -bytes);
    }
}

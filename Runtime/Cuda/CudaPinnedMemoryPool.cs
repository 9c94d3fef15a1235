using LoraRuntime.Interop;
using LoraRuntime.Memory;

namespace LoraRuntime.Cuda;

/// <summary>
/// A caching pool of page-locked host memory (cuMemHostAlloc, portable to every context): the staging buffers of
/// uploads and downloads, which the GPU copies from and to directly and asynchronously.
/// </summary>
public sealed unsafe class CudaPinnedMemoryPool : MemoryPool
{
    private readonly CudaDevice _device;

    internal CudaPinnedMemoryPool(CudaDevice device)
    {
        _device = device;
        Name = $"cuda:{device.Info.Ordinal} pinned host";
    }

    /// <inheritdoc/>
    public override string Name { get; }

    /// <inheritdoc/>
    protected override nint Allocate(long bytes)
    {
        _device.MakeCurrent();
        void* pointer;
        CUresult status = CudaDriver.cuMemHostAlloc(&pointer, (nuint)bytes, CudaDriver.CU_MEMHOSTALLOC_PORTABLE);
        if (status == CUresult.CUDA_ERROR_OUT_OF_MEMORY) return 0;
        if (status != CUresult.CUDA_SUCCESS) throw new CudaException($"cuMemHostAlloc({bytes} bytes)", status);
        return (nint)pointer;
    }

    /// <inheritdoc/>
    protected override void Free(nint block)
    {
        _device.MakeCurrent();
        CudaDriver.ThrowIfFailed(CudaDriver.cuMemFreeHost((void*)block));
    }
}

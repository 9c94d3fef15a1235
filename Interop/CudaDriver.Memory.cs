using System.Runtime.InteropServices;

namespace LoraRuntime.Interop;

#pragma warning disable CA1707, IDE1006 // the names are the header's

// The driver's memory calls: device and pinned host blocks, copies and fills (the _v2 symbols of
// shared/cuda/SIGNATURES.md). CUdeviceptr is an unsigned 64-bit address, bound as ulong.
public static unsafe partial class CudaDriver
{
    /// <summary>CUresult cuMemGetInfo_v2(size_t* free, size_t* total).</summary>
    [LibraryImport(Library, EntryPoint = "cuMemGetInfo_v2")]
    public static partial CUresult cuMemGetInfo(nuint* free, nuint* total);

    /// <summary>CUresult cuMemAlloc_v2(CUdeviceptr*, size_t).</summary>
    [LibraryImport(Library, EntryPoint = "cuMemAlloc_v2")]
    public static partial CUresult cuMemAlloc(ulong* pointer, nuint bytes);

    /// <summary>CUresult cuMemFree_v2(CUdeviceptr).</summary>
    [LibraryImport(Library, EntryPoint = "cuMemFree_v2")]
    public static partial CUresult cuMemFree(ulong pointer);

    /// <summary>CUresult cuMemHostAlloc(void**, size_t, unsigned flags): page-locked host memory.</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuMemHostAlloc(void** pointer, nuint bytes, uint flags);

    /// <summary>CUresult cuMemFreeHost(void*).</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuMemFreeHost(void* pointer);

    /// <summary>CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t).</summary>
    [LibraryImport(Library, EntryPoint = "cuMemcpyHtoD_v2")]
    public static partial CUresult cuMemcpyHtoD(ulong destination, void* source, nuint bytes);

    /// <summary>CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t).</summary>
    [LibraryImport(Library, EntryPoint = "cuMemcpyDtoH_v2")]
    public static partial CUresult cuMemcpyDtoH(void* destination, ulong source, nuint bytes);

    /// <summary>CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr, const void*, size_t, CUstream).</summary>
    [LibraryImport(Library, EntryPoint = "cuMemcpyHtoDAsync_v2")]
    public static partial CUresult cuMemcpyHtoDAsync(ulong destination, void* source, nuint bytes, nint stream);

    /// <summary>CUresult cuMemcpyDtoHAsync_v2(void*, CUdeviceptr, size_t, CUstream).</summary>
    [LibraryImport(Library, EntryPoint = "cuMemcpyDtoHAsync_v2")]
    public static partial CUresult cuMemcpyDtoHAsync(void* destination, ulong source, nuint bytes, nint stream);

    /// <summary>CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr, CUdeviceptr, size_t, CUstream).</summary>
    [LibraryImport(Library, EntryPoint = "cuMemcpyDtoDAsync_v2")]
    public static partial CUresult cuMemcpyDtoDAsync(ulong destination, ulong source, nuint bytes, nint stream);

    /// <summary>CUresult cuMemsetD32Async(CUdeviceptr, unsigned value, size_t count, CUstream): count 32-bit words.</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuMemsetD32Async(ulong destination, uint value, nuint count, nint stream);

    /// <summary>CUresult cuMemsetD8Async(CUdeviceptr, unsigned char value, size_t count, CUstream).</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuMemsetD8Async(ulong destination, byte value, nuint count, nint stream);

    /// <summary>cuMemHostAlloc flag: the memory is pinned for every context.</summary>
    public const uint CU_MEMHOSTALLOC_PORTABLE = 1;
}

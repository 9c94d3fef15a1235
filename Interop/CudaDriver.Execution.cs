using System.Runtime.InteropServices;

namespace LoraRuntime.Interop;

#pragma warning disable CA1707, IDE1006 // the names are the header's

// The driver's contexts, streams, events, modules, kernel launches and graphs (shared/cuda/SIGNATURES.md).
// Handles (CUcontext, CUstream, CUevent, CUmodule, CUfunction, CUgraph, CUgraphExec) are opaque pointers.
public static unsafe partial class CudaDriver
{
    /// <summary>CUresult cuDevicePrimaryCtxRetain(CUcontext*, CUdevice).</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuDevicePrimaryCtxRetain(nint* context, int device);

    /// <summary>CUresult cuDevicePrimaryCtxRelease_v2(CUdevice).</summary>
    [LibraryImport(Library, EntryPoint = "cuDevicePrimaryCtxRelease_v2")]
    public static partial CUresult cuDevicePrimaryCtxRelease(int device);

    /// <summary>CUresult cuCtxSetCurrent(CUcontext).</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuCtxSetCurrent(nint context);

    /// <summary>CUresult cuCtxGetCurrent(CUcontext*).</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuCtxGetCurrent(nint* context);

    /// <summary>CUresult cuCtxSynchronize(void).</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuCtxSynchronize();

    /// <summary>CUresult cuStreamCreate(CUstream*, unsigned flags); <see cref="CU_STREAM_NON_BLOCKING"/> = 1.</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuStreamCreate(nint* stream, uint flags);

    /// <summary>CUresult cuStreamDestroy_v2(CUstream).</summary>
    [LibraryImport(Library, EntryPoint = "cuStreamDestroy_v2")]
    public static partial CUresult cuStreamDestroy(nint stream);

    /// <summary>CUresult cuStreamSynchronize(CUstream).</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuStreamSynchronize(nint stream);

    /// <summary>CUresult cuStreamQuery(CUstream): success when idle, CUDA_ERROR_NOT_READY otherwise.</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuStreamQuery(nint stream);

    /// <summary>CUresult cuStreamWaitEvent(CUstream, CUevent, unsigned flags); flags 0.</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuStreamWaitEvent(nint stream, nint @event, uint flags);

    /// <summary>CUresult cuEventCreate(CUevent*, unsigned flags).</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuEventCreate(nint* @event, uint flags);

    /// <summary>CUresult cuEventDestroy_v2(CUevent).</summary>
    [LibraryImport(Library, EntryPoint = "cuEventDestroy_v2")]
    public static partial CUresult cuEventDestroy(nint @event);

    /// <summary>CUresult cuEventRecord(CUevent, CUstream).</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuEventRecord(nint @event, nint stream);

    /// <summary>CUresult cuEventSynchronize(CUevent).</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuEventSynchronize(nint @event);

    /// <summary>CUresult cuEventQuery(CUevent): success when complete, CUDA_ERROR_NOT_READY otherwise.</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuEventQuery(nint @event);

    /// <summary>CUresult cuEventElapsedTime(float* ms, CUevent start, CUevent end) (the symbol both 12 and 13 export).</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuEventElapsedTime(float* milliseconds, nint start, nint end);

    /// <summary>CUresult cuModuleLoadData(CUmodule*, const void* image): a CUBIN or NUL-terminated PTX.</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuModuleLoadData(nint* module, void* image);

    /// <summary>CUresult cuModuleUnload(CUmodule).</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuModuleUnload(nint module);

    /// <summary>CUresult cuModuleGetFunction(CUfunction*, CUmodule, const char* name): name is NUL-terminated ASCII.</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuModuleGetFunction(nint* function, nint module, byte* name);

    /// <summary>
    /// CUresult cuLaunchKernel(CUfunction, gridDim x/y/z, blockDim x/y/z, sharedMemBytes, CUstream, void** kernelParams,
    /// void** extra): kernelParams[i] points at the value of parameter i.
    /// </summary>
    [LibraryImport(Library)]
    public static partial CUresult cuLaunchKernel(nint function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ,
        uint sharedMemoryBytes, nint stream, void** parameters, void** extra);

    /// <summary>CUresult cuStreamBeginCapture_v2(CUstream, CUstreamCaptureMode).</summary>
    [LibraryImport(Library, EntryPoint = "cuStreamBeginCapture_v2")]
    public static partial CUresult cuStreamBeginCapture(nint stream, CUstreamCaptureMode mode);

    /// <summary>CUresult cuStreamEndCapture(CUstream, CUgraph*).</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuStreamEndCapture(nint stream, nint* graph);

    /// <summary>CUresult cuGraphInstantiateWithFlags(CUgraphExec*, CUgraph, unsigned long long flags).</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuGraphInstantiateWithFlags(nint* graphExec, nint graph, ulong flags);

    /// <summary>CUresult cuGraphLaunch(CUgraphExec, CUstream).</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuGraphLaunch(nint graphExec, nint stream);

    /// <summary>CUresult cuGraphExecDestroy(CUgraphExec).</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuGraphExecDestroy(nint graphExec);

    /// <summary>CUresult cuGraphDestroy(CUgraph).</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuGraphDestroy(nint graph);

    /// <summary>cuStreamCreate flag: the stream does not synchronise with the legacy default stream.</summary>
    public const uint CU_STREAM_NON_BLOCKING = 1;

    /// <summary>cuEventCreate flag: no timing data (cheaper to record and wait on).</summary>
    public const uint CU_EVENT_DISABLE_TIMING = 2;
}

/// <summary>How a stream capture treats unsafe calls from other threads (CUstreamCaptureMode).</summary>
public enum CUstreamCaptureMode
{
    /// <summary>Unsafe calls from any thread are errors while any capture is under way.</summary>
    CU_STREAM_CAPTURE_MODE_GLOBAL = 0,
    /// <summary>Unsafe calls are errors only on the capturing thread.</summary>
    CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1,
    /// <summary>No checks.</summary>
    CU_STREAM_CAPTURE_MODE_RELAXED = 2,
}

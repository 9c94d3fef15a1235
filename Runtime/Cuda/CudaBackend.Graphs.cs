using LoraRuntime.Interop;

namespace LoraRuntime.Cuda;

// CUDA-graph capture of a fixed-shape step (a decode step, a training step) for replay with one launch.
public sealed unsafe partial class CudaBackend
{
    /// <summary>
    /// Runs <paramref name="step"/> once in capture mode (nothing executes) and returns it as a replayable graph. The step
    /// may queue GEMMs, kernels, fills and device copies on this backend. It must not wait for the GPU — no download,
    /// <see cref="Synchronize"/>, linear algebra, or a validation that reads device values (embedding ids, cross-entropy
    /// targets) — nor upload from host memory (the staging copy would not be replayed), nor take a block the pool has not
    /// cached: warm the step up once before capturing it. A step that breaks these rules throws, and nothing is captured.
    /// </summary>
    public CudaGraph Capture(Action step)
    {
        ArgumentNullException.ThrowIfNull(step);
        using var gate = Enter();
        // Pending work (uploads) first, so that the captured step sees it done.
        CudaDriver.ThrowIfFailed(CudaDriver.cuStreamSynchronize(_stream));
        CudaDriver.ThrowIfFailed(CudaDriver.cuStreamBeginCapture(_stream, CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
        nint graph = 0;
        try
        {
            step();
        }
        catch
        {
            CudaDriver.cuStreamEndCapture(_stream, &graph);
            if (graph != 0) CudaDriver.cuGraphDestroy(graph);
            throw;
        }
        CudaDriver.ThrowIfFailed(CudaDriver.cuStreamEndCapture(_stream, &graph));
        nint exec;
        CUresult status = CudaDriver.cuGraphInstantiateWithFlags(&exec, graph, 0);
        if (status != CUresult.CUDA_SUCCESS)
        {
            CudaDriver.cuGraphDestroy(graph);
            throw new CudaException("cuGraphInstantiateWithFlags", status);
        }
        return new CudaGraph(this, graph, exec);
    }
}

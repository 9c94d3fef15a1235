using LoraRuntime.Interop;

namespace LoraRuntime.Cuda;

/// <summary>
/// A fixed-shape step captured once from a <see cref="CudaBackend"/>'s stream and replayed with one launch: the kernels,
/// GEMMs and device copies the step queued, on the same tensors (their addresses are baked in). Fill the inputs (e.g.
/// with <see cref="Backend.Copy"/> from a staging tensor, or an upload before <see cref="Launch"/>) and read the outputs
/// after. Dispose to free the graph.
/// </summary>
public sealed unsafe class CudaGraph : IDisposable
{
    private readonly CudaBackend _backend;
    private nint _graph, _exec;

    internal CudaGraph(CudaBackend backend, nint graph, nint exec)
    {
        _backend = backend;
        _graph = graph;
        _exec = exec;
    }

    /// <summary>Queues the whole step on the backend's stream (asynchronous, like every backend operation).</summary>
    public void Launch()
    {
        ObjectDisposedException.ThrowIf(_exec == 0, this);
        using var gate = _backend.Enter();
        CudaDriver.ThrowIfFailed(CudaDriver.cuGraphLaunch(_exec, _backend.Stream));
    }

    /// <summary>Frees the executable graph and the graph.</summary>
    public void Dispose()
    {
        if (_exec == 0) return;
        using var gate = _backend.Enter();
        CudaDriver.cuGraphExecDestroy(_exec);
        CudaDriver.cuGraphDestroy(_graph);
        _exec = _graph = 0;
    }
}

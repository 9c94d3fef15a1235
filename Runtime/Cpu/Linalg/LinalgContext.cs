namespace LoraRuntime.Cpu.Linalg;

/// <summary>
/// What one linear-algebra call works with: its scratch <see cref="Arena"/> (from the backend's pool, returned on
/// <see cref="Dispose"/>), a float64 <see cref="Dgemm"/> and <see cref="Gemv"/> over the backend's workers. Created
/// per call, so concurrent calls share nothing but the worker pool.
/// </summary>
internal sealed class LinalgContext : IDisposable
{
    private readonly CpuBackend _backend;
    private readonly DgemmKernel _kernel;
    private readonly long _maxDim;

    /// <summary>
    /// A context for matrices of at most <paramref name="maxDim"/> rows or columns, with a first scratch block of
    /// <paramref name="estimateDoubles"/> doubles (beside the GEMM's own buffers).
    /// </summary>
    public LinalgContext(CpuBackend backend, DgemmKernel kernel, long maxDim, long estimateDoubles)
    {
        _backend = backend;
        _kernel = kernel;
        _maxDim = maxDim;
        Workers = new LinalgThreads(backend.Workers);
        Arena = new Arena(backend.Pool, estimateDoubles);
        Gemm = new Dgemm(kernel, Workers, Arena, maxDim, maxDim);
        Gemv = new Gemv(Workers, Arena, maxDim);
        Secular = new SecularRoots(Workers);
    }

    public LinalgThreads Workers { get; }
    public Arena Arena { get; }
    public Dgemm Gemm { get; }
    public Gemv Gemv { get; }
    public SecularRoots Secular { get; }

    /// <summary>
    /// Runs two independent pieces of work side by side, <paramref name="first"/> with this context and
    /// <paramref name="second"/> with a second one (its own scratch of <paramref name="secondEstimateDoubles"/> and
    /// GEMM buffers): one hand-off to the workers for the whole of both, where splitting each GEMM inside them would
    /// cost one per product. Inside, both contexts are <see cref="LinalgThreads.Serial"/>. With one thread, or a pool
    /// busy with another caller, they run one after the other.
    /// </summary>
    public void InParallel(Action<LinalgContext> first, Action<LinalgContext> second, long secondEstimateDoubles)
    {
        if (Workers.Count == 1)
        {
            first(this);
            second(this);
            return;
        }
        using var lane = new LinalgContext(_backend, _kernel, _maxDim, secondEstimateDoubles);
        Workers.Serial = lane.Workers.Serial = true;
        try
        {
            Workers.Pool.Run(new Pair(first, this, second, lane), 2);
        }
        finally
        {
            Workers.Serial = false;
        }
    }

    public void Dispose() => Arena.Dispose();

    private sealed class Pair(Action<LinalgContext> first, LinalgContext firstContext, Action<LinalgContext> second,
        LinalgContext secondContext) : IParallelWork
    {
        public void Execute(int task, int worker)
        {
            if (task == 0) first(firstContext);
            else second(secondContext);
        }
    }
}

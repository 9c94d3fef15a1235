namespace LoraRuntime.Cpu.Linalg;

/// <summary>
/// What one linear-algebra call works with: its scratch <see cref="Arena"/> (from the backend's pool, returned on
/// <see cref="Dispose"/>), a float64 <see cref="Dgemm"/> and <see cref="Gemv"/> over the backend's workers. Created
/// per call, so concurrent calls share nothing but the worker pool.
/// </summary>
internal sealed class LinalgContext : IDisposable
{
    /// <summary>
    /// A context for matrices of at most <paramref name="maxDim"/> rows or columns, with a first scratch block of
    /// <paramref name="estimateDoubles"/> doubles (beside the GEMM's own buffers).
    /// </summary>
    public LinalgContext(CpuBackend backend, DgemmKernel kernel, long maxDim, long estimateDoubles)
    {
        Workers = backend.Workers;
        Arena = new Arena(backend.Pool, estimateDoubles);
        Gemm = new Dgemm(kernel, Workers, Arena, maxDim, maxDim);
        Gemv = new Gemv(Workers, Arena, maxDim);
    }

    public CpuWorkerPool Workers { get; }
    public Arena Arena { get; }
    public Dgemm Gemm { get; }
    public Gemv Gemv { get; }

    public void Dispose() => Arena.Dispose();
}

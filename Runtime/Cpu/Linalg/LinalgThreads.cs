namespace LoraRuntime.Cpu.Linalg;

/// <summary>
/// The worker pool as one linear-algebra context sees it. While the context is one of two lanes running side by side
/// (<see cref="LinalgContext.InParallel"/>) it is <see cref="Serial"/>: its products run on its own thread, because
/// the pool is already held by the pair and its lock is re-entrant, so a nested run from the same thread would not
/// fall back to running inline but overwrite the outer run's state.
/// </summary>
internal sealed class LinalgThreads(CpuWorkerPool pool)
{
    /// <summary>The pool (its thread count sizes per-worker buffers).</summary>
    public CpuWorkerPool Pool { get; } = pool;

    /// <summary>True while the products of this context must stay on the calling thread.</summary>
    public bool Serial { get; set; }

    /// <summary>Threads a product may use now.</summary>
    public int Count => Serial ? 1 : Pool.ThreadCount;

    /// <summary>Runs tasks 0..<paramref name="tasks"/>−1 across the pool, or all on this thread (as worker 0) when serial.</summary>
    public void Run(IParallelWork work, int tasks)
    {
        if (Serial || tasks <= 1 || Pool.ThreadCount == 1)
        {
            for (int t = 0; t < tasks; t++) work.Execute(t, 0);
            return;
        }
        Pool.Run(work, tasks);
    }
}

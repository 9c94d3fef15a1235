namespace LoraRuntime.Cpu.Primitives;

/// <summary>Work over items [start, end): rows of a row-wise operator, or elements of an element-wise one.</summary>
internal interface IRangeOp
{
    void Run(long start, long end);
}

/// <summary>
/// Runs an <see cref="IRangeOp"/> over the worker pool when it is large enough to pay for the hand-off, otherwise on
/// the calling thread. Allocation-free once warm: each thread keeps one work object per operator type, so
/// concurrent callers never share one.
/// </summary>
internal sealed class ParallelFor<TOp> : IParallelWork where TOp : struct, IRangeOp
{
    [ThreadStatic] private static ParallelFor<TOp>? t_work;

    private TOp _op;
    private long _count;
    private int _tasks;
    private int _granule;

    /// <summary>
    /// Runs <paramref name="op"/> over items [0, <paramref name="count"/>), each touching about
    /// <paramref name="elementsPerItem"/> elements. Task boundaries fall on multiples of <paramref name="granule"/>
    /// (a vector's worth of elements keeps the vector loops whole), and no task gets more than
    /// <see cref="ParallelPlan.MaxItemsPerTask"/> items, so element ranges always fit a span.
    /// </summary>
    public static void Run(CpuWorkerPool workers, TOp op, long count, long elementsPerItem, int granule = 1)
    {
        // The thread's work item is made at its first call whatever the size, so that a call that first needs several tasks
        // later (a decode step whose cache has grown) allocates nothing: warming up a path at any size is enough.
        var work = t_work ??= new ParallelFor<TOp>();
        int tasks = ParallelPlan.TaskCount(workers.ThreadCount, count, elementsPerItem, granule);
        if (tasks <= 1)
        {
            if (count > 0) op.Run(0, count);
            return;
        }
        work._op = op;
        work._count = count;
        work._tasks = tasks;
        work._granule = granule;
        try
        {
            workers.Run(work, tasks);
        }
        finally
        {
            work._op = default;
        }
    }

    public void Execute(int task, int worker)
    {
        long start = ParallelPlan.Boundary(task, _tasks, _count, _granule);
        long end = ParallelPlan.Boundary(task + 1, _tasks, _count, _granule);
        if (start < end) _op.Run(start, end);
    }
}

/// <summary>How a range is cut into tasks.</summary>
internal static class ParallelPlan
{
    /// <summary>Below this many elements a single thread wins: waking workers costs microseconds.</summary>
    public const long MinParallelElements = 1 << 16;

    /// <summary>The most items one task gets (2^30): element ranges then always fit a span.</summary>
    public const long MaxItemsPerTask = 1L << 30;

    /// <summary>Tasks per thread: a few, so that uneven rows or a busy core do not leave others idle.</summary>
    private const int TasksPerThread = 4;

    public static int TaskCount(int threads, long count, long elementsPerItem, int granule)
    {
        long tasks = 1;
        if (threads > 1 && count * elementsPerItem > MinParallelElements)
            tasks = Math.Clamp(count / granule, 1, (long)threads * TasksPerThread);
        long needed = (count + MaxItemsPerTask - 1) / MaxItemsPerTask;
        return (int)Math.Max(tasks, needed);
    }

    /// <summary>Where task <paramref name="task"/> starts (task == tasks gives count).</summary>
    public static long Boundary(int task, int tasks, long count, int granule)
    {
        if (task >= tasks) return count;
        long at = (long)((Int128)count * task / tasks);
        return at - at % granule;
    }
}

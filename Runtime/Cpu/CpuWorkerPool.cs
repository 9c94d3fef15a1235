using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;

namespace LoraRuntime.Cpu;

/// <summary>A unit of parallel work: <see cref="Execute"/> is called once for each task index.</summary>
public interface IParallelWork
{
    /// <summary>Runs task <paramref name="task"/> on worker <paramref name="worker"/> (0 is the calling thread).</summary>
    void Execute(int task, int worker);
}

/// <summary>
/// Persistent worker threads for the CPU kernels. <see cref="Run"/> hands out task indices through one
/// atomic counter; the caller works too, so a pool of N threads has N - 1 workers. Nothing is allocated per
/// call. One parallel run at a time: a caller that finds the pool busy runs its tasks on its own thread.
/// Workers spin for about <see cref="SpinMicroseconds"/> after a run, so back-to-back kernels (a training step, a
/// decode loop) pay no wake-up from the kernel scheduler; then they sleep on an event.
/// </summary>
public sealed class CpuWorkerPool : IDisposable
{
    private static readonly Lazy<CpuWorkerPool> s_shared = new(() => new CpuWorkerPool(DefaultThreadCount()));

    private readonly Thread[] _threads;
    private readonly ManualResetEventSlim[] _wake;
    private readonly object _doneLock = new(); // the caller sleeps here when the last tasks take long
    private readonly Lock _runLock = new();
    private IParallelWork? _work;
    private int _taskCount;
    private int _nextTask;
    private int _active;
    private int _helpers;    // workers 1.._helpers take part in the current run
    private int _generation; // bumped once per run; spinning workers watch it
    private volatile bool _stopping;
    private ExceptionDispatchInfo? _error;

    /// <summary>How long an idle worker watches for the next run before it sleeps.</summary>
    public const int SpinMicroseconds = 50;

    private static readonly long s_spinTicks = System.Diagnostics.Stopwatch.Frequency * SpinMicroseconds / 1_000_000;

    /// <summary>The process-wide pool: <c>LORA_NUM_THREADS</c> threads, or one per logical core.</summary>
    public static CpuWorkerPool Shared => s_shared.Value;

    /// <summary>A pool of <paramref name="threadCount"/> threads including the caller (≥ 1).</summary>
    public CpuWorkerPool(int threadCount)
    {
        if (threadCount < 1)
            throw new ArgumentOutOfRangeException(nameof(threadCount), threadCount, "a worker pool needs at least 1 thread");
        ThreadCount = threadCount;
        _threads = new Thread[threadCount - 1];
        _wake = new ManualResetEventSlim[threadCount - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            _wake[i] = new ManualResetEventSlim(false, spinCount: 2000);
            int worker = i + 1;
            _threads[i] = new Thread(() => WorkerLoop(worker)) { IsBackground = true, Name = $"lora-cpu-{worker}" };
            _threads[i].Start();
        }
    }

    /// <summary>Threads that run tasks, the caller included.</summary>
    public int ThreadCount { get; }

    /// <summary>
    /// Runs <paramref name="work"/> for task indices 0..<paramref name="taskCount"/>-1 and returns when all are
    /// done. The first exception thrown by a task is rethrown here after the others finish.
    /// </summary>
    public void Run(IParallelWork work, int taskCount)
    {
        if (taskCount <= 0) return;
        if (taskCount == 1 || _threads.Length == 0 || !_runLock.TryEnter())
        {
            for (int t = 0; t < taskCount; t++) work.Execute(t, 0);
            return;
        }
        try
        {
            int helpers = Math.Min(_threads.Length, taskCount - 1);
            _work = work;
            _taskCount = taskCount;
            _nextTask = 0;
            _error = null;
            _helpers = helpers;
            Volatile.Write(ref _active, helpers);
            Interlocked.Increment(ref _generation);
            for (int i = 0; i < helpers; i++) _wake[i].Set();
            Drain(0);
            WaitForHelpers();
            _work = null;
            _error?.Throw();
        }
        finally
        {
            _runLock.Exit();
        }
    }

    private void WaitForHelpers()
    {
        var spin = new SpinWait();
        while (Volatile.Read(ref _active) != 0 && !spin.NextSpinWillYield) spin.SpinOnce(-1);
        if (Volatile.Read(ref _active) == 0) return;
        lock (_doneLock)
            while (Volatile.Read(ref _active) != 0) Monitor.Wait(_doneLock);
    }

    private void Drain(int worker)
    {
        var work = _work!;
        int count = _taskCount;
        try
        {
            for (int t = Interlocked.Increment(ref _nextTask) - 1; t < count; t = Interlocked.Increment(ref _nextTask) - 1)
                work.Execute(t, worker);
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref _error, ExceptionDispatchInfo.Capture(e), null);
            Volatile.Write(ref _nextTask, count); // stop handing out tasks
        }
    }

    // Entered once and never left, so tiered compilation would keep it at tier 0 (on-stack replacement aside).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void WorkerLoop(int worker)
    {
        var wake = _wake[worker - 1];
        int seen = 0;
        while (true)
        {
            long deadline = System.Diagnostics.Stopwatch.GetTimestamp() + s_spinTicks;
            while (Volatile.Read(ref _generation) == seen && !_stopping && System.Diagnostics.Stopwatch.GetTimestamp() < deadline)
                Thread.SpinWait(20);
            if (Volatile.Read(ref _generation) == seen && !_stopping) wake.Wait();
            wake.Reset();
            if (_stopping) return;
            int generation = Volatile.Read(ref _generation);
            if (generation == seen) continue; // a wake-up for a run this worker already took by spinning
            seen = generation;
            if (worker > _helpers) continue;  // this run needs fewer threads
            Drain(worker);
            if (Interlocked.Decrement(ref _active) == 0)
                lock (_doneLock) Monitor.PulseAll(_doneLock);
        }
    }

    private static int DefaultThreadCount()
    {
        string? env = Environment.GetEnvironmentVariable("LORA_NUM_THREADS");
        if (env is not null && int.TryParse(env, out int n) && n >= 1) return n;
        // Ranks of a job launched on this machine share its cores: each takes its part (mpirun's default binding to a
        // core already narrows ProcessorCount, the affinity mask's size, to one).
        int localRanks = Distributed.DistributedLaunch.Detect().LocalSize;
        return localRanks <= 1 ? Environment.ProcessorCount : Math.Max(1, Math.Min(Environment.ProcessorCount, OnlineCores() / localRanks));
    }

    /// <summary>The machine's online cores (/sys/devices/system/cpu/online, "0-15,32-47"); ProcessorCount where that is unreadable.</summary>
    private static int OnlineCores()
    {
        try
        {
            int count = 0;
            foreach (string range in File.ReadAllText("/sys/devices/system/cpu/online").Trim().Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                int dash = range.IndexOf('-');
                count += dash < 0 ? 1 : int.Parse(range[(dash + 1)..], System.Globalization.CultureInfo.InvariantCulture) - int.Parse(range[..dash], System.Globalization.CultureInfo.InvariantCulture) + 1;
            }
            return count > 0 ? count : Environment.ProcessorCount;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or OverflowException)
        {
            return Environment.ProcessorCount;
        }
    }

    /// <summary>Stops the worker threads.</summary>
    public void Dispose()
    {
        _stopping = true;
        foreach (var w in _wake) w.Set();
        foreach (var t in _threads) t.Join();
        foreach (var w in _wake) w.Dispose();
    }
}

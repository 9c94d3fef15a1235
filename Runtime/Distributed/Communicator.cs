namespace LoraRuntime.Distributed;

/// <summary>
/// The processes of one job and the collectives data-parallel training needs: a sum over every rank of a float32
/// tensor (the gradients) or of a few host values (losses), a broadcast, and an abort that ends the whole
/// job. <see cref="FromEnvironment"/> gives MPI's world when the process was launched by <c>mpirun</c> and a single
/// process otherwise, where every collective is the identity. Every rank ends a sum with the same bits.
/// </summary>
public abstract class Communicator : IDisposable
{
    /// <summary>This process's rank, 0 ≤ rank &lt; <see cref="Size"/>.</summary>
    public abstract int Rank { get; }

    /// <summary>The number of ranks.</summary>
    public abstract int Size { get; }

    /// <summary>How ranks talk: "none" (one process), "MPI" or "NCCL".</summary>
    public abstract string Transport { get; }

    /// <summary>The library and its version ("Open MPI v4.1.4 (libmpi.so.40)"), or "none".</summary>
    public abstract string Library { get; }

    /// <summary>This machine's name, as the transport knows it.</summary>
    public virtual string Host => Environment.MachineName;

    /// <summary>True when more than one rank takes part.</summary>
    public bool IsDistributed => Size > 1;

    /// <summary>"rank 1 of 2 on host", the name of this process in messages.</summary>
    public string Describe() => $"rank {Rank} of {Size} on {Host}";

    /// <summary>Replaces <paramref name="values"/> (float32) on every rank by its sum over the ranks.</summary>
    public abstract void AllReduceSum(Tensor values);

    /// <summary>Replaces <paramref name="values"/> (host float64) on every rank by its sum over the ranks.</summary>
    public abstract void AllReduceSum(Span<double> values);

    /// <summary>Copies <paramref name="bytes"/> of rank <paramref name="root"/> into every other rank's.</summary>
    public abstract void Broadcast(Span<byte> bytes, int root);

    /// <summary>Ends every process of the job with <paramref name="exitCode"/>; does not return.</summary>
    public abstract void Abort(int exitCode);

    /// <summary>The world of a process that was not launched by a launcher: rank 0 of 1.</summary>
    public static Communicator SingleProcess { get; } = new SingleProcessCommunicator();

    /// <summary>
    /// MPI's world when <see cref="DistributedLaunch.Detect()"/> finds a launcher (initialises MPI: once per process),
    /// else <see cref="SingleProcess"/>. Throws <see cref="DistributedException"/> when a launcher started the process
    /// but Open MPI's library does not load or initialise.
    /// </summary>
    public static Communicator FromEnvironment()
    {
        var launch = DistributedLaunch.Detect();
        return launch.ByLauncher ? MpiCommunicator.InitializeWorld(launch) : SingleProcess;
    }

    /// <summary>
    /// The communicator for <paramref name="backend"/>'s tensors in the job of <paramref name="world"/>: NCCL over the
    /// GPUs when the backend is CUDA, the job has several ranks and libnccl loads (set up through
    /// <paramref name="world"/>, which keeps the host collectives); <paramref name="world"/> itself otherwise (device
    /// tensors then travel through host memory).
    /// </summary>
    public static Communicator ForBackend(Communicator world, Backend backend)
    {
        ArgumentNullException.ThrowIfNull(world);
        ArgumentNullException.ThrowIfNull(backend);
        if (!world.IsDistributed || world is not MpiCommunicator mpi) return world;
        // Every rank votes, whatever its device, so that a job whose ranks chose different devices agrees (on MPI).
        return NcclCommunicator.TryCreate(mpi, backend as Cuda.CudaBackend) ?? world;
    }

    /// <summary>Checks a collective's arguments: a live float32 tensor of this communicator's kind of memory.</summary>
    protected static void CheckValues(Tensor values)
    {
        ArgumentNullException.ThrowIfNull(values);
        ObjectDisposedException.ThrowIf(values.IsDisposed, values);
        if (values.DType != DType.F32)
            throw new ArgumentException($"values: expected a float32 tensor; got {values.DType}", nameof(values));
    }

    /// <summary>Leaves the transport (MPI_Finalize); the single process has nothing to leave.</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Leaves the transport.</summary>
    protected virtual void Dispose(bool disposing)
    {
    }

    private sealed class SingleProcessCommunicator : Communicator
    {
        public override int Rank => 0;
        public override int Size => 1;
        public override string Transport => "none";
        public override string Library => "none";

        public override void AllReduceSum(Tensor values) => CheckValues(values);

        public override void AllReduceSum(Span<double> values)
        {
        }

        public override void Broadcast(Span<byte> bytes, int root)
        {
            if (root != 0) throw new ArgumentOutOfRangeException(nameof(root), root, "root: expected 0, the only rank");
        }

        public override void Abort(int exitCode) => Environment.Exit(exitCode);
    }
}

/// <summary>A job of several processes could not start or went wrong: MPI did not load or initialise, or a collective failed.</summary>
public sealed class DistributedException : Exception
{
    /// <summary>A failure with no further detail.</summary>
    public DistributedException() : base("the distributed job failed")
    {
    }

    /// <summary>A failure described by <paramref name="message"/>.</summary>
    public DistributedException(string message) : base(message)
    {
    }

    /// <summary>A failure described by <paramref name="message"/>, caused by <paramref name="innerException"/>.</summary>
    public DistributedException(string message, Exception? innerException) : base(message, innerException)
    {
    }
}

/// <summary>
/// What the launcher told this process through its environment: Open MPI's <c>mpirun</c> sets
/// <c>OMPI_COMM_WORLD_SIZE</c>, <c>_RANK</c> and <c>_LOCAL_SIZE</c>; a PMIx launcher (Slurm's <c>srun --mpi=pmix</c>)
/// sets <c>PMIX_RANK</c>.
/// </summary>
/// <param name="ByLauncher">True when a launcher started the process.</param>
/// <param name="Size">The job's ranks as the launcher gave them (1 when unknown).</param>
/// <param name="Rank">This process's rank as the launcher gave it (0 when unknown).</param>
/// <param name="LocalSize">The job's ranks on this machine (1 when unknown).</param>
/// <param name="Source">The variable that told ("OMPI_COMM_WORLD_SIZE=2"), or "no launcher variable".</param>
/// <param name="LocalRank">This process's rank among those on this machine (0 when unknown): its GPU, where there are several.</param>
public readonly record struct DistributedLaunch(bool ByLauncher, int Size, int Rank, int LocalSize, string Source, int LocalRank = 0)
{
    /// <summary>The launch of the current process.</summary>
    public static DistributedLaunch Detect() => Detect(Environment.GetEnvironmentVariable);

    /// <summary>The launch the variables <paramref name="variable"/> reads describe.</summary>
    public static DistributedLaunch Detect(Func<string, string?> variable)
    {
        ArgumentNullException.ThrowIfNull(variable);
        static int Number(string? text, int fallback) => int.TryParse(text, out int n) && n >= 0 ? n : fallback;
        if (variable("OMPI_COMM_WORLD_SIZE") is { } size)
            return new DistributedLaunch(true, Math.Max(1, Number(size, 1)), Number(variable("OMPI_COMM_WORLD_RANK"), 0),
                Math.Max(1, Number(variable("OMPI_COMM_WORLD_LOCAL_SIZE"), 1)), $"OMPI_COMM_WORLD_SIZE={size}",
                Number(variable("OMPI_COMM_WORLD_LOCAL_RANK"), 0));
        if (variable("PMIX_RANK") is { } rank)
            return new DistributedLaunch(true, 1, Number(rank, 0), 1, $"PMIX_RANK={rank}");
        return new DistributedLaunch(false, 1, 0, 1, "no launcher variable");
    }
}

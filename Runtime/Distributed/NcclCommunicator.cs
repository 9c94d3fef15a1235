using LoraRuntime.Cuda;
using LoraRuntime.Interop;

namespace LoraRuntime.Distributed;

/// <summary>
/// NCCL's allreduce on a CUDA backend's tensors, in its stream, with MPI (<see cref="MpiCommunicator"/>) for the set-up
/// (rank 0's unique id goes to every rank by MPI_Bcast) and for every host collective, as PyTorch's DDP pairs them.
/// Each rank needs a GPU of its own (NCCL refuses two ranks on one device): the CUDA backend of a job takes the GPU of
/// its local rank, and a machine with more ranks than GPUs keeps MPI through host memory. Disposal destroys the NCCL communicator and leaves MPI to its owner.
/// </summary>
public sealed unsafe class NcclCommunicator : Communicator
{
    private readonly MpiCommunicator _mpi;
    private readonly CudaBackend _backend;
    private nint _comm;

    private NcclCommunicator(MpiCommunicator mpi, CudaBackend backend, nint comm, int version)
    {
        (_mpi, _backend, _comm) = (mpi, backend, comm);
        Library = $"NCCL {version / 10000}.{version / 100 % 100}.{version % 100} ({NativeLibraryResolver.Load(Nccl.Library).LoadedFrom}), over {mpi.Library}";
    }

    /// <inheritdoc/>
    public override int Rank => _mpi.Rank;

    /// <inheritdoc/>
    public override int Size => _mpi.Size;

    /// <inheritdoc/>
    public override string Transport => "NCCL";

    /// <inheritdoc/>
    public override string Library { get; }

    /// <inheritdoc/>
    public override string Host => _mpi.Host;

    /// <summary>
    /// NCCL over <paramref name="backend"/>'s GPU for the ranks of <paramref name="mpi"/>, or null when a rank is not on
    /// CUDA (<paramref name="backend"/> null), has no libnccl or shares its GPU (every rank, whatever its device, reaches
    /// the same answer through one sum). A failure after that (two ranks on one GPU, a network error) is a
    /// <see cref="DistributedException"/>.
    /// </summary>
    public static NcclCommunicator? TryCreate(MpiCommunicator mpi, CudaBackend? backend)
    {
        ArgumentNullException.ThrowIfNull(mpi);
        // Every rank must take the same path: agree on whether each can (a sum of "cannot" over the ranks). A rank cannot
        // without libnccl, or when its machine runs more ranks than it has GPUs (NCCL refuses two ranks on one device;
        // the MPI path through host memory serves them).
        var launch = DistributedLaunch.Detect();
        bool can = backend is not null && NativeLibraryResolver.Load(Nccl.Library).IsLoaded && launch.LocalSize <= Devices.Probe.Devices.Count;
        Span<double> cannot = [can ? 0 : 1];
        mpi.AllReduceSum(cannot);
        if (cannot[0] > 0 || backend is null) return null;
        try
        {
            int version = 0;
            Nccl.ThrowIfFailed(Nccl.ncclGetVersion(&version));
            ncclUniqueId id = default;
            if (mpi.Rank == 0) Nccl.ThrowIfFailed(Nccl.ncclGetUniqueId(&id));
            mpi.Broadcast(new Span<byte>(id.Internal, ncclUniqueId.Bytes), 0);
            nint comm = 0;
            using (backend.Enter()) Nccl.ThrowIfFailed(Nccl.ncclCommInitRank(&comm, mpi.Size, id, mpi.Rank));
            return new NcclCommunicator(mpi, backend, comm, version);
        }
        catch (CudaLibraryException e)
        {
            throw new DistributedException($"{mpi.Describe()}: NCCL could not set up the job on {backend.Name}: {e.Message}", e);
        }
    }

    /// <inheritdoc/>
    public override void AllReduceSum(Tensor values)
    {
        CheckValues(values);
        ObjectDisposedException.ThrowIf(_comm == 0, this);
        if (values.Backend != _backend)
        {
            _mpi.AllReduceSum(values);
            return;
        }
        if (values.Length == 0) return;
        using (_backend.Enter())
        {
            void* p = (void*)values.Pointer;
            Nccl.ThrowIfFailed(Nccl.ncclAllReduce(p, p, (nuint)values.Length, ncclDataType_t.ncclFloat32, ncclRedOp_t.ncclSum, _comm, _backend.Stream));
        }
        _backend.Synchronize(); // returns when every rank holds the sum, as the MPI path does
    }

    /// <inheritdoc/>
    public override void AllReduceSum(Span<double> values) => _mpi.AllReduceSum(values);

    /// <inheritdoc/>
    public override void Broadcast(Span<byte> bytes, int root) => _mpi.Broadcast(bytes, root);

    /// <inheritdoc/>
    public override void Abort(int exitCode)
    {
        if (_comm != 0) Nccl.ncclCommAbort(_comm);
        _mpi.Abort(exitCode);
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (_comm == 0) return;
        using (_backend.Enter()) Nccl.ncclCommDestroy(_comm);
        _comm = 0;
    }
}

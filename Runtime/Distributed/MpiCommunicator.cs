using System.Text;
using LoraRuntime.Interop;

namespace LoraRuntime.Distributed;

/// <summary>
/// MPI's world communicator over Open MPI (<see cref="Mpi"/>): initialised once per process with
/// MPI_THREAD_SERIALIZED and the errors-return handler, so that a failed collective becomes a
/// <see cref="DistributedException"/> naming the call and the rank (the caller then aborts the job) rather than a
/// silent exit. Host tensors are reduced in place; device tensors go through a pinned host buffer taken at the first
/// call. Messages longer than 2³⁰ elements go in
/// pieces.
/// </summary>
public sealed unsafe class MpiCommunicator : Communicator
{
    private const int MaxElementsPerCall = 1 << 30;
    private static readonly object s_lock = new();
    private static MpiCommunicator? s_world;
    private static bool s_finalized;

    private readonly MpiHandles _handles;
    private float[] _staging = [];
    private bool _disposed;

    private MpiCommunicator(MpiHandles handles, int rank, int size, string library, string host)
    {
        _handles = handles;
        (Rank, Size, Library, Host) = (rank, size, library, host);
    }

    /// <inheritdoc/>
    public override int Rank { get; }

    /// <inheritdoc/>
    public override int Size { get; }

    /// <inheritdoc/>
    public override string Transport => "MPI";

    /// <inheritdoc/>
    public override string Library { get; }

    /// <inheritdoc/>
    public override string Host { get; }

    /// <summary>
    /// The world of this process: loads Open MPI, calls MPI_Init_thread, reads rank, size, version and host. The same
    /// instance on every call until it is disposed (MPI_Finalize); MPI cannot be initialised twice in one process.
    /// </summary>
    public static MpiCommunicator InitializeWorld(DistributedLaunch launch)
    {
        lock (s_lock)
        {
            if (s_world is not null) return s_world;
            if (s_finalized) throw new DistributedException("MPI was finalised in this process; it cannot be initialised again");
            var load = MpiLibrary.Load();
            if (!load.IsLoaded)
                throw new DistributedException(
                    $"launched by an MPI launcher ({launch.Source}) but Open MPI's library did not load " +
                    $"(install Debian's openmpi-bin, or set {MpiLibrary.OverrideVariable}); tried: {string.Join("; ", load.Tried)}");
            MpiHandles handles;
            try
            {
                handles = MpiHandles.From(load.Handle);
            }
            catch (EntryPointNotFoundException e)
            {
                throw new DistributedException($"{load.LoadedFrom}: {e.Message}", e);
            }
            int flag = 0, provided = 0;
            Check(Mpi.MPI_Initialized(&flag), "MPI_Initialized", -1);
            if (flag == 0)
            {
                Check(Mpi.MPI_Init_thread(null, null, Mpi.MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread", -1);
                // Collectives come from whichever thread runs the step: a library built without thread support cannot serve them.
                if (provided < Mpi.MPI_THREAD_SERIALIZED)
                    throw new DistributedException(
                        $"{load.LoadedFrom}: MPI_Init_thread gave thread level {provided}; MPI_THREAD_SERIALIZED ({Mpi.MPI_THREAD_SERIALIZED}) is needed");
            }
            Check(Mpi.MPI_Comm_set_errhandler(handles.CommWorld, handles.ErrorsReturn), "MPI_Comm_set_errhandler", -1);
            int rank = 0, size = 0, length = 0;
            Check(Mpi.MPI_Comm_rank(handles.CommWorld, &rank), "MPI_Comm_rank", -1);
            Check(Mpi.MPI_Comm_size(handles.CommWorld, &size), "MPI_Comm_size", rank);
            byte* text = stackalloc byte[Math.Max(Mpi.MaxLibraryVersionString, Mpi.MaxProcessorName)];
            Check(Mpi.MPI_Get_library_version(text, &length), "MPI_Get_library_version", rank);
            string version = FirstLine(text, length);
            Check(Mpi.MPI_Get_processor_name(text, &length), "MPI_Get_processor_name", rank);
            string host = FirstLine(text, length);
            s_world = new MpiCommunicator(handles, rank, size, $"{version} ({load.LoadedFrom})", host);
            return s_world;
        }
    }

    /// <summary>
    /// Open MPI's version and file ("Open MPI v4.1.4 (libmpi.so.40)") without initialising it (MPI_Get_library_version
    /// may be called first), or why it is not there; for <c>lora info</c> outside a launcher.
    /// </summary>
    public static string ProbeLibrary()
    {
        var load = MpiLibrary.Load();
        if (!load.IsLoaded) return $"not found; tried: {string.Join("; ", load.Tried)}";
        try
        {
            byte* text = stackalloc byte[Mpi.MaxLibraryVersionString];
            int length = 0;
            return Mpi.MPI_Get_library_version(text, &length) == Mpi.MPI_SUCCESS
                ? $"{FirstLine(text, length)} ({load.LoadedFrom})"
                : $"{load.LoadedFrom} (its version could not be read)";
        }
        catch (EntryPointNotFoundException e)
        {
            return $"{load.LoadedFrom}: {e.Message}";
        }
    }

    /// <inheritdoc/>
    public override void AllReduceSum(Tensor values)
    {
        CheckValues(values);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (values.Length == 0 || Size == 1) return;
        if (values.Backend.IsHostMemory)
        {
            Reduce((float*)values.Pointer, values.Length);
            return;
        }
        if (_staging.Length < values.Length) _staging = GC.AllocateUninitializedArray<float>(checked((int)values.Length), pinned: true);
        var host = _staging.AsSpan(0, (int)values.Length);
        values.Backend.Download(values, host);
        fixed (float* p = host) Reduce(p, values.Length);
        values.Backend.Upload(values, host);
    }

    /// <inheritdoc/>
    public override void AllReduceSum(Span<double> values)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (values.IsEmpty || Size == 1) return;
        fixed (double* p = values) Check(Mpi.MPI_Allreduce(Mpi.InPlace, p, values.Length, _handles.Double, _handles.Sum, _handles.CommWorld), "MPI_Allreduce", Rank);
    }

    /// <inheritdoc/>
    public override void Broadcast(Span<byte> bytes, int root)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (root < 0 || root >= Size) throw new ArgumentOutOfRangeException(nameof(root), root, $"root: expected a rank in [0, {Size}); got {root}");
        for (int start = 0; start < bytes.Length; start += MaxElementsPerCall)
        {
            int count = Math.Min(MaxElementsPerCall, bytes.Length - start);
            fixed (byte* p = bytes.Slice(start, count)) Check(Mpi.MPI_Bcast(p, count, _handles.Byte, root, _handles.CommWorld), "MPI_Bcast", Rank);
        }
    }

    /// <summary>MPI_Abort on the world: the launcher ends every rank with <paramref name="exitCode"/>.</summary>
    public override void Abort(int exitCode)
    {
        Mpi.MPI_Abort(_handles.CommWorld, exitCode);
        Environment.Exit(exitCode); // MPI_Abort does not return; this is for a library that does
    }

    private void Reduce(float* values, long length)
    {
        for (long start = 0; start < length; start += MaxElementsPerCall)
        {
            int count = (int)Math.Min(MaxElementsPerCall, length - start);
            Check(Mpi.MPI_Allreduce(Mpi.InPlace, values + start, count, _handles.Float, _handles.Sum, _handles.CommWorld), "MPI_Allreduce", Rank);
        }
    }

    private static void Check(int code, string call, int rank)
    {
        if (code != Mpi.MPI_SUCCESS)
            throw new DistributedException($"{call} failed{(rank >= 0 ? $" on rank {rank}" : "")}: {Mpi.ErrorString(code)} (a rank of the job ended or lost its connection?)");
    }

    private static string FirstLine(byte* text, int length)
    {
        string value = Encoding.UTF8.GetString(text, Math.Clamp(length, 0, Mpi.MaxLibraryVersionString)).TrimEnd('\0');
        int end = value.IndexOfAny([',', '\n']);
        return (end < 0 ? value : value[..end]).Trim();
    }

    /// <summary>MPI_Finalize, after a barrier's worth of waiting for every rank (MPI's rule); later calls do nothing.</summary>
    protected override void Dispose(bool disposing)
    {
        lock (s_lock)
        {
            if (_disposed) return;
            _disposed = true;
            int finalized = 0;
            if (Mpi.MPI_Finalized(&finalized) == Mpi.MPI_SUCCESS && finalized == 0) Mpi.MPI_Finalize();
            s_finalized = true;
            s_world = null;
        }
    }
}

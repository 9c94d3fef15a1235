using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace LoraRuntime.Interop;

#pragma warning disable CA1707, IDE1006 // the names are the header's

/// <summary>ncclResult_t (nccl.h).</summary>
public enum ncclResult_t
{
    /// <summary>Success.</summary>
    ncclSuccess = 0,
    /// <summary>A CUDA call failed.</summary>
    ncclUnhandledCudaError = 1,
    /// <summary>A system call failed (a socket, shared memory).</summary>
    ncclSystemError = 2,
    /// <summary>An internal check failed.</summary>
    ncclInternalError = 3,
    /// <summary>An invalid argument (a null pointer, a bad count).</summary>
    ncclInvalidArgument = 4,
    /// <summary>An invalid use (two ranks on one GPU, a bad rank).</summary>
    ncclInvalidUsage = 5,
    /// <summary>A remote rank failed or disconnected.</summary>
    ncclRemoteError = 6,
    /// <summary>A non-blocking operation is still in progress.</summary>
    ncclInProgress = 7,
}

/// <summary>ncclDataType_t (nccl.h): the values this runtime reduces.</summary>
public enum ncclDataType_t
{
    /// <summary>float32.</summary>
    ncclFloat32 = 7,
    /// <summary>float64.</summary>
    ncclFloat64 = 8,
}

/// <summary>ncclRedOp_t (nccl.h).</summary>
public enum ncclRedOp_t
{
    /// <summary>Sum.</summary>
    ncclSum = 0,
}

/// <summary>ncclUniqueId: 128 opaque bytes made by one rank and given to all (here through MPI_Bcast).</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct ncclUniqueId
{
    /// <summary>NCCL_UNIQUE_ID_BYTES.</summary>
    public const int Bytes = 128;

    /// <summary>The bytes.</summary>
    public fixed byte Internal[Bytes];
}

/// <summary>
/// Raw bindings to NCCL (libnccl.so.2: the system's, or PyTorch's <c>nvidia/nccl/lib</c> wheel folder, found by the
/// same resolver as the CUDA libraries): the version, unique ids, communicator set-up and teardown, and the allreduce on
/// device buffers in a stream.
/// </summary>
public static unsafe partial class Nccl
{
    /// <summary>The library name the bindings import.</summary>
    public const string Library = CudaLibraryNames.Nccl;

    static Nccl() => NativeLibraryResolver.Register();

    /// <summary>ncclResult_t ncclGetVersion(int* version): major·10000 + minor·100 + patch (2.9 and later).</summary>
    [LibraryImport(Library)]
    public static partial ncclResult_t ncclGetVersion(int* version);

    /// <summary>ncclResult_t ncclGetUniqueId(ncclUniqueId* uniqueId).</summary>
    [LibraryImport(Library)]
    public static partial ncclResult_t ncclGetUniqueId(ncclUniqueId* uniqueId);

    /// <summary>ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank), on the current device.</summary>
    [LibraryImport(Library)]
    public static partial ncclResult_t ncclCommInitRank(nint* comm, int nranks, ncclUniqueId commId, int rank);

    /// <summary>ncclResult_t ncclCommDestroy(ncclComm_t comm).</summary>
    [LibraryImport(Library)]
    public static partial ncclResult_t ncclCommDestroy(nint comm);

    /// <summary>ncclResult_t ncclCommAbort(ncclComm_t comm).</summary>
    [LibraryImport(Library)]
    public static partial ncclResult_t ncclCommAbort(nint comm);

    /// <summary>ncclResult_t ncclAllReduce(sendbuff, recvbuff, size_t count, datatype, op, comm, cudaStream_t stream); in place when the buffers are equal.</summary>
    [LibraryImport(Library)]
    public static partial ncclResult_t ncclAllReduce(void* sendbuff, void* recvbuff, nuint count, ncclDataType_t datatype, ncclRedOp_t op, nint comm, nint stream);

    /// <summary>const char* ncclGetErrorString(ncclResult_t result).</summary>
    [LibraryImport(Library)]
    public static partial byte* ncclGetErrorString(ncclResult_t result);

    /// <summary>Throws a <see cref="CudaLibraryException"/> naming <paramref name="call"/> unless <paramref name="result"/> is success.</summary>
    public static void ThrowIfFailed(ncclResult_t result, [CallerArgumentExpression(nameof(result))] string call = "")
    {
        if (result == ncclResult_t.ncclSuccess) return;
        string text;
        try
        {
            text = Marshal.PtrToStringUTF8((nint)ncclGetErrorString(result)) ?? "";
        }
        catch (EntryPointNotFoundException)
        {
            text = "";
        }
        throw new CudaLibraryException("NCCL", call, result.ToString(), (int)result, text.Length > 0 ? text : null);
    }
}

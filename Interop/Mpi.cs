using System.Runtime.InteropServices;

namespace LoraRuntime.Interop;

#pragma warning disable CA1707, IDE1006 // the names are the header's

/// <summary>
/// Raw bindings to the MPI C API of Open MPI (libmpi.so.40: Open MPI 3, 4 and 5). Open MPI's handles are pointers to
/// its predefined objects (<c>MPI_COMM_WORLD</c> is <c>&amp;ompi_mpi_comm_world</c>, <c>MPI_FLOAT</c> is
/// <c>&amp;ompi_mpi_float</c>), read from the library's exports by <see cref="MpiHandles"/>; <c>MPI_IN_PLACE</c> is
/// <c>(void*)1</c>. Every function returns an MPI error code, 0 (<see cref="MPI_SUCCESS"/>) on success; with the
/// <c>MPI_ERRORS_RETURN</c> handler set on a communicator, failures come back as codes instead of ending the process.
/// </summary>
public static unsafe partial class Mpi
{
    /// <summary>The library name the bindings import (resolved by <see cref="MpiLibrary"/>).</summary>
    public const string Library = MpiLibrary.Name;

    /// <summary>MPI_SUCCESS.</summary>
    public const int MPI_SUCCESS = 0;

    /// <summary>MPI_THREAD_SERIALIZED: any thread may call, one at a time.</summary>
    public const int MPI_THREAD_SERIALIZED = 2;

    /// <summary>MPI_MAX_LIBRARY_VERSION_STRING of Open MPI.</summary>
    public const int MaxLibraryVersionString = 256;

    /// <summary>MPI_MAX_PROCESSOR_NAME of Open MPI.</summary>
    public const int MaxProcessorName = 256;

    /// <summary>MPI_MAX_ERROR_STRING of Open MPI.</summary>
    public const int MaxErrorString = 256;

    /// <summary>MPI_IN_PLACE of Open MPI.</summary>
    public static readonly void* InPlace = (void*)1;

    static Mpi() => NativeLibraryResolver.Register();

    /// <summary>int MPI_Initialized(int* flag).</summary>
    [LibraryImport(Library)]
    public static partial int MPI_Initialized(int* flag);

    /// <summary>int MPI_Finalized(int* flag).</summary>
    [LibraryImport(Library)]
    public static partial int MPI_Finalized(int* flag);

    /// <summary>int MPI_Init_thread(int* argc, char*** argv, int required, int* provided); argc and argv may be null.</summary>
    [LibraryImport(Library)]
    public static partial int MPI_Init_thread(int* argc, byte*** argv, int required, int* provided);

    /// <summary>int MPI_Finalize(void).</summary>
    [LibraryImport(Library)]
    public static partial int MPI_Finalize();

    /// <summary>int MPI_Abort(MPI_Comm comm, int errorcode): ends every process of the job.</summary>
    [LibraryImport(Library)]
    public static partial int MPI_Abort(nint comm, int errorcode);

    /// <summary>int MPI_Comm_rank(MPI_Comm comm, int* rank).</summary>
    [LibraryImport(Library)]
    public static partial int MPI_Comm_rank(nint comm, int* rank);

    /// <summary>int MPI_Comm_size(MPI_Comm comm, int* size).</summary>
    [LibraryImport(Library)]
    public static partial int MPI_Comm_size(nint comm, int* size);

    /// <summary>int MPI_Comm_set_errhandler(MPI_Comm comm, MPI_Errhandler errhandler).</summary>
    [LibraryImport(Library)]
    public static partial int MPI_Comm_set_errhandler(nint comm, nint errhandler);

    /// <summary>int MPI_Allreduce(const void* sendbuf, void* recvbuf, int count, MPI_Datatype datatype, MPI_Op op, MPI_Comm comm).</summary>
    [LibraryImport(Library)]
    public static partial int MPI_Allreduce(void* sendbuf, void* recvbuf, int count, nint datatype, nint op, nint comm);

    /// <summary>int MPI_Bcast(void* buffer, int count, MPI_Datatype datatype, int root, MPI_Comm comm).</summary>
    [LibraryImport(Library)]
    public static partial int MPI_Bcast(void* buffer, int count, nint datatype, int root, nint comm);

    /// <summary>int MPI_Get_library_version(char* version, int* resultlen); version holds <see cref="MaxLibraryVersionString"/> bytes.</summary>
    [LibraryImport(Library)]
    public static partial int MPI_Get_library_version(byte* version, int* resultlen);

    /// <summary>int MPI_Get_processor_name(char* name, int* resultlen); name holds <see cref="MaxProcessorName"/> bytes.</summary>
    [LibraryImport(Library)]
    public static partial int MPI_Get_processor_name(byte* name, int* resultlen);

    /// <summary>int MPI_Error_string(int errorcode, char* string, int* resultlen); string holds <see cref="MaxErrorString"/> bytes.</summary>
    [LibraryImport(Library)]
    public static partial int MPI_Error_string(int errorcode, byte* text, int* resultlen);

    /// <summary>The text of an MPI error code ("MPI_ERR_TRUNCATE: message truncated").</summary>
    public static string ErrorString(int code)
    {
        byte* text = stackalloc byte[MaxErrorString];
        int length = 0;
        return MPI_Error_string(code, text, &length) == MPI_SUCCESS && length > 0
            ? System.Text.Encoding.UTF8.GetString(text, Math.Min(length, MaxErrorString)).TrimEnd('\0')
            : $"MPI error {code}";
    }
}

/// <summary>
/// The predefined handles of Open MPI, as the addresses of the objects the library exports: the world communicator,
/// the float/double/byte datatypes, the sum operation and the errors-return handler.
/// </summary>
/// <param name="CommWorld">MPI_COMM_WORLD.</param>
/// <param name="Float">MPI_FLOAT.</param>
/// <param name="Double">MPI_DOUBLE.</param>
/// <param name="Byte">MPI_BYTE.</param>
/// <param name="Sum">MPI_SUM.</param>
/// <param name="ErrorsReturn">MPI_ERRORS_RETURN.</param>
public readonly record struct MpiHandles(nint CommWorld, nint Float, nint Double, nint Byte, nint Sum, nint ErrorsReturn)
{
    /// <summary>Reads the handles from the loaded library <paramref name="library"/>; throws naming the first missing export.</summary>
    public static MpiHandles From(nint library)
    {
        static nint Export(nint library, string name) =>
            NativeLibrary.TryGetExport(library, name, out nint address)
                ? address
                : throw new EntryPointNotFoundException($"the MPI library does not export {name}: it is not Open MPI (MPICH and Intel MPI use integer handles, which are not bound)");
        return new MpiHandles(
            Export(library, "ompi_mpi_comm_world"), Export(library, "ompi_mpi_float"), Export(library, "ompi_mpi_double"),
            Export(library, "ompi_mpi_byte"), Export(library, "ompi_mpi_op_sum"),
            Export(library, "ompi_mpi_errors_return"));
    }
}

/// <summary>
/// Finds Open MPI's C library: the file <c>LORA_MPI_LIBRARY</c> names, else <c>libmpi.so.40</c> through the system
/// loader (Debian's openmpi-bin, or LD_LIBRARY_PATH). Cached for the process; never throws.
/// </summary>
public static class MpiLibrary
{
    /// <summary>The short name of the <c>[LibraryImport]</c>s.</summary>
    public const string Name = "mpi";

    /// <summary>The override variable: a path to libmpi.</summary>
    public const string OverrideVariable = "LORA_MPI_LIBRARY";

    /// <summary>The file names tried through the system loader.</summary>
    public static IReadOnlyList<string> FileNames { get; } = ["libmpi.so.40"];

    private static readonly Lazy<LibraryLoadResult> s_result = new(Search);

    /// <summary>The library, loaded on first use.</summary>
    public static LibraryLoadResult Load() => s_result.Value;

    private static LibraryLoadResult Search()
    {
        var tried = new List<string>();
        string? path = Environment.GetEnvironmentVariable(OverrideVariable);
        var candidates = string.IsNullOrEmpty(path) ? FileNames : [path, .. FileNames];
        if (string.IsNullOrEmpty(path)) tried.Add($"{OverrideVariable}: not set");
        foreach (string candidate in candidates)
        {
            try
            {
                return new LibraryLoadResult(Name, NativeLibrary.Load(candidate), candidate, tried);
            }
            catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
            {
                tried.Add($"{candidate}: {NativeLibraryResolver.LoaderReason(e.Message, candidate)}");
            }
        }
        return new LibraryLoadResult(Name, 0, null, tried);
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace LoraRuntime.Interop;

#pragma warning disable CA1707, IDE1006 // the names are the header's

/// <summary>nvrtcResult (nvrtc.h).</summary>
public enum nvrtcResult
{
    /// <summary>Success.</summary>
    NVRTC_SUCCESS = 0,
    /// <summary>Out of memory.</summary>
    NVRTC_ERROR_OUT_OF_MEMORY = 1,
    /// <summary>The program could not be created.</summary>
    NVRTC_ERROR_PROGRAM_CREATION_FAILURE = 2,
    /// <summary>An invalid input.</summary>
    NVRTC_ERROR_INVALID_INPUT = 3,
    /// <summary>An invalid program handle.</summary>
    NVRTC_ERROR_INVALID_PROGRAM = 4,
    /// <summary>An unknown or malformed option.</summary>
    NVRTC_ERROR_INVALID_OPTION = 5,
    /// <summary>The source did not compile (see the program log).</summary>
    NVRTC_ERROR_COMPILATION = 6,
    /// <summary>A builtin operation failed (libnvrtc-builtins missing?).</summary>
    NVRTC_ERROR_BUILTIN_OPERATION_FAILURE = 7,
    /// <summary>A name expression was added after compilation.</summary>
    NVRTC_ERROR_NO_NAME_EXPRESSIONS_AFTER_COMPILATION = 8,
    /// <summary>A lowered name was asked for before compilation.</summary>
    NVRTC_ERROR_NO_LOWERED_NAMES_BEFORE_COMPILATION = 9,
    /// <summary>An invalid name expression.</summary>
    NVRTC_ERROR_NAME_EXPRESSION_NOT_VALID = 10,
    /// <summary>An internal error.</summary>
    NVRTC_ERROR_INTERNAL_ERROR = 11,
}

/// <summary>
/// Raw bindings to NVRTC, the runtime CUDA C++ compiler (libnvrtc): programs, compilation with options, the log,
/// CUBIN (for a real <c>sm_XY</c> architecture) and PTX, and the version. Strings are NUL-terminated UTF-8.
/// </summary>
public static unsafe partial class Nvrtc
{
    /// <summary>The library name the bindings import.</summary>
    public const string Library = CudaLibraryNames.Nvrtc;

    static Nvrtc() => NativeLibraryResolver.Register();

    /// <summary>nvrtcResult nvrtcVersion(int* major, int* minor).</summary>
    [LibraryImport(Library)]
    public static partial nvrtcResult nvrtcVersion(int* major, int* minor);

    /// <summary>nvrtcResult nvrtcGetNumSupportedArchs(int*).</summary>
    [LibraryImport(Library)]
    public static partial nvrtcResult nvrtcGetNumSupportedArchs(int* count);

    /// <summary>nvrtcResult nvrtcGetSupportedArchs(int*): e.g. 80, 86, 90 for sm_80, sm_86, sm_90.</summary>
    [LibraryImport(Library)]
    public static partial nvrtcResult nvrtcGetSupportedArchs(int* architectures);

    /// <summary>nvrtcCreateProgram(prog*, src, name, numHeaders, headers, includeNames).</summary>
    [LibraryImport(Library)]
    public static partial nvrtcResult nvrtcCreateProgram(nint* program, byte* source, byte* name, int headerCount, byte** headers, byte** includeNames);

    /// <summary>nvrtcResult nvrtcDestroyProgram(nvrtcProgram*).</summary>
    [LibraryImport(Library)]
    public static partial nvrtcResult nvrtcDestroyProgram(nint* program);

    /// <summary>nvrtcResult nvrtcCompileProgram(prog, numOptions, options).</summary>
    [LibraryImport(Library)]
    public static partial nvrtcResult nvrtcCompileProgram(nint program, int optionCount, byte** options);

    /// <summary>nvrtcResult nvrtcGetProgramLogSize(prog, size_t*): the size includes the terminating NUL.</summary>
    [LibraryImport(Library)]
    public static partial nvrtcResult nvrtcGetProgramLogSize(nint program, nuint* size);

    /// <summary>nvrtcResult nvrtcGetProgramLog(prog, char*).</summary>
    [LibraryImport(Library)]
    public static partial nvrtcResult nvrtcGetProgramLog(nint program, byte* log);

    /// <summary>nvrtcResult nvrtcGetCUBINSize(prog, size_t*): 0 when compiled for a virtual architecture.</summary>
    [LibraryImport(Library)]
    public static partial nvrtcResult nvrtcGetCUBINSize(nint program, nuint* size);

    /// <summary>nvrtcResult nvrtcGetCUBIN(prog, char*).</summary>
    [LibraryImport(Library)]
    public static partial nvrtcResult nvrtcGetCUBIN(nint program, byte* cubin);

    /// <summary>nvrtcResult nvrtcGetPTXSize(prog, size_t*).</summary>
    [LibraryImport(Library)]
    public static partial nvrtcResult nvrtcGetPTXSize(nint program, nuint* size);

    /// <summary>nvrtcResult nvrtcGetPTX(prog, char*).</summary>
    [LibraryImport(Library)]
    public static partial nvrtcResult nvrtcGetPTX(nint program, byte* ptx);

    /// <summary>const char* nvrtcGetErrorString(nvrtcResult).</summary>
    [LibraryImport(Library)]
    public static partial byte* nvrtcGetErrorString(nvrtcResult result);

    /// <summary>Throws <see cref="CudaLibraryException"/> naming <paramref name="call"/> when <paramref name="status"/> is not success.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThrowIfFailed(nvrtcResult status, [CallerArgumentExpression(nameof(status))] string call = "")
    {
        if (status != nvrtcResult.NVRTC_SUCCESS) Throw(status, call, null);
    }

    /// <summary>Throws for a failed call with extra <paramref name="detail"/> (the compiler log).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Throw(nvrtcResult status, string call, string? detail) =>
        throw new CudaLibraryException("NVRTC", call, Enum.IsDefined(status) ? status.ToString() : "nvrtcResult", (int)status, detail);
}

namespace LoraRuntime.Interop;

/// <summary>
/// A cuBLAS, cuSOLVER or NVRTC call that returned an error status: names the library, the call (as written at the
/// call site) and the status by name and value.
/// </summary>
public sealed class CudaLibraryException : Exception
{
    /// <summary>Creates the exception for <paramref name="call"/> of <paramref name="library"/> returning <paramref name="status"/>.</summary>
    public CudaLibraryException(string library, string call, string status, int code, string? detail = null)
        : base($"{(string.IsNullOrEmpty(call) ? $"a {library} call" : call)} failed: {status} ({code}){(detail is null ? "" : ": " + detail)}")
    {
        Library = library;
        Call = call;
        Status = status;
        Code = code;
    }

    /// <summary>The library ("cuBLAS", "cuSOLVER", "NVRTC").</summary>
    public string Library { get; }

    /// <summary>The call as written at the call site.</summary>
    public string Call { get; }

    /// <summary>The status's name.</summary>
    public string Status { get; }

    /// <summary>The status's numeric value.</summary>
    public int Code { get; }
}

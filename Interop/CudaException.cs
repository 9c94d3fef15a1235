namespace LoraRuntime.Interop;

/// <summary>A driver call that returned an error: names the call and the status.</summary>
public sealed class CudaException : Exception
{
    /// <summary>Creates the exception for <paramref name="call"/> returning <paramref name="status"/>.</summary>
    public CudaException(string call, CUresult status)
        : base($"{(string.IsNullOrEmpty(call) ? "a CUDA driver call" : call)} failed: {CudaDriver.Describe(status)}")
    {
        Call = call;
        Status = status;
    }

    /// <summary>The call as written at the call site (<c>cuInit(0)</c>).</summary>
    public string Call { get; }

    /// <summary>The status it returned.</summary>
    public CUresult Status { get; }
}

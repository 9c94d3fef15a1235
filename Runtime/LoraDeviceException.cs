using LoraRuntime.Interop;

namespace LoraRuntime;

/// <summary>
/// A device failed, as opposed to a caller's bad input (<see cref="ArgumentException"/>) or a pool out of memory
/// (<see cref="InsufficientMemoryException"/>): a CUDA driver or library call returned an error, a native library did
/// not load, or the device asked for cannot be used. The failing call is the <see cref="Exception.InnerException"/>.
/// </summary>
public sealed class LoraDeviceException : Exception
{
    /// <summary>A device failure with no further detail.</summary>
    public LoraDeviceException() : base("the device failed")
    {
    }

    /// <summary>A device failure described by <paramref name="message"/>.</summary>
    public LoraDeviceException(string message) : base(message)
    {
    }

    /// <summary>A device failure described by <paramref name="message"/>, caused by <paramref name="innerException"/>.</summary>
    public LoraDeviceException(string message, Exception? innerException) : base(message, innerException)
    {
    }

    /// <summary>
    /// True for the exceptions a device or its libraries raise: a CUDA driver, cuBLAS, cuSOLVER or NVRTC error, a native
    /// library or entry point that did not load. Pool exhaustion is not one (it is an <see cref="InsufficientMemoryException"/>).
    /// </summary>
    public static bool IsDeviceFailure(Exception exception) =>
        exception is CudaException or CudaLibraryException or DllNotFoundException or EntryPointNotFoundException;
}

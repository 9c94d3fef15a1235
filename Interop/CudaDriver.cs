using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace LoraRuntime.Interop;

#pragma warning disable CA1707, IDE1006 // the names are the header's

/// <summary>
/// Raw bindings to the CUDA driver API (libcuda), the symbols of shared/cuda/SIGNATURES.md: blittable
/// signatures, <see cref="CUresult"/> status codes, the <c>_v2</c> entry points where the header remaps them.
/// No policy: callers check statuses with <see cref="ThrowIfFailed"/>.
/// </summary>
public static unsafe partial class CudaDriver
{
    /// <summary>The library name the bindings import (resolved by <see cref="NativeLibraryResolver"/>).</summary>
    public const string Library = CudaLibraryNames.Driver;

    static CudaDriver() => NativeLibraryResolver.Register();

    /// <summary>CUresult cuInit(unsigned flags); flags must be 0.</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuInit(uint flags);

    /// <summary>CUresult cuDriverGetVersion(int*): 1000·major + 10·minor.</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuDriverGetVersion(int* version);

    /// <summary>CUresult cuDeviceGetCount(int*).</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuDeviceGetCount(int* count);

    /// <summary>CUresult cuDeviceGet(CUdevice*, int ordinal).</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuDeviceGet(int* device, int ordinal);

    /// <summary>CUresult cuDeviceGetName(char*, int len, CUdevice): a NUL-terminated ASCII name.</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuDeviceGetName(byte* name, int length, int device);

    /// <summary>CUresult cuDeviceTotalMem_v2(size_t*, CUdevice).</summary>
    [LibraryImport(Library, EntryPoint = "cuDeviceTotalMem_v2")]
    public static partial CUresult cuDeviceTotalMem(nuint* bytes, int device);

    /// <summary>CUresult cuDeviceGetAttribute(int*, CUdevice_attribute, CUdevice).</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuDeviceGetAttribute(int* value, CUdevice_attribute attribute, int device);

    /// <summary>CUresult cuGetErrorName(CUresult, const char**): a static string owned by the driver.</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuGetErrorName(CUresult error, byte** name);

    /// <summary>CUresult cuGetErrorString(CUresult, const char**): a static string owned by the driver.</summary>
    [LibraryImport(Library)]
    public static partial CUresult cuGetErrorString(CUresult error, byte** description);

    /// <summary>Throws <see cref="CudaException"/> naming <paramref name="call"/> when <paramref name="status"/> is not success.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThrowIfFailed(CUresult status, [CallerArgumentExpression(nameof(status))] string call = "")
    {
        if (status != CUresult.CUDA_SUCCESS) Throw(status, call);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Throw(CUresult status, string call) => throw new CudaException(call, status);

    /// <summary>
    /// "CUDA_ERROR_NO_DEVICE (100): no CUDA-capable device is detected": the driver's own name and description
    /// when the driver is loaded, the enum's name otherwise. Never throws.
    /// </summary>
    public static string Describe(CUresult status)
    {
        string name = Enum.IsDefined(status) ? status.ToString() : "CUresult";
        string? description = null;
        if (NativeLibraryResolver.Load(Library).IsLoaded)
        {
            try
            {
                byte* text;
                if (cuGetErrorName(status, &text) == CUresult.CUDA_SUCCESS && text != null)
                    name = Marshal.PtrToStringUTF8((nint)text) ?? name;
                if (cuGetErrorString(status, &text) == CUresult.CUDA_SUCCESS && text != null)
                    description = Marshal.PtrToStringUTF8((nint)text);
            }
            catch (EntryPointNotFoundException)
            {
                // A driver too old for these entry points: the enum's name will do.
            }
        }
        return description is null ? $"{name} ({(int)status})" : $"{name} ({(int)status}): {description}";
    }
}

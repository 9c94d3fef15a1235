using System.Text;
using LoraRuntime.Interop;

namespace LoraRuntime.Cuda;

/// <summary>One CUDA device as the driver reports it.</summary>
/// <param name="Ordinal">The device ordinal (cuDeviceGet).</param>
/// <param name="Name">The product name.</param>
/// <param name="TotalMemoryBytes">Global memory in bytes.</param>
/// <param name="ComputeCapabilityMajor">Compute capability, major (9 for Hopper).</param>
/// <param name="ComputeCapabilityMinor">Compute capability, minor.</param>
/// <param name="MultiprocessorCount">Streaming multiprocessors.</param>
public sealed record CudaDeviceInfo(
    int Ordinal, string Name, long TotalMemoryBytes, int ComputeCapabilityMajor, int ComputeCapabilityMinor, int MultiprocessorCount)
{
    /// <summary>"sm_90".</summary>
    public string Architecture => $"sm_{ComputeCapabilityMajor}{ComputeCapabilityMinor}";
}

/// <summary>What <see cref="CudaProbe.Probe"/> found.</summary>
/// <param name="Available">True when the driver loaded, initialised and reported at least one device.</param>
/// <param name="Reason">Why CUDA is or is not available, in one sentence.</param>
/// <param name="DriverVersion">1000·major + 10·minor (13000 for CUDA 13.0); 0 when unknown.</param>
/// <param name="Devices">The devices, empty when none.</param>
/// <param name="Tried">Every place the driver library was looked for, with why it did not load.</param>
public sealed record CudaProbeResult(
    bool Available, string Reason, int DriverVersion, IReadOnlyList<CudaDeviceInfo> Devices, IReadOnlyList<string> Tried)
{
    /// <summary>"13.0", or "none" when the driver did not answer.</summary>
    public string DriverVersionText => DriverVersion > 0 ? $"{DriverVersion / 1000}.{DriverVersion % 1000 / 10}" : "none";
}

/// <summary>Asks the CUDA driver what is there. Never throws: a missing driver or GPU is a result.</summary>
public static unsafe class CudaProbe
{
    /// <summary>
    /// Loads the driver through <see cref="NativeLibraryResolver"/>, calls cuInit(0), counts the devices and reads
    /// each one's name, memory, compute capability and multiprocessor count.
    /// </summary>
    public static CudaProbeResult Probe()
    {
        var driver = NativeLibraryResolver.Load(CudaLibraryNames.Driver);
        var tried = driver.Tried;
        if (!driver.IsLoaded)
            return Unavailable(driver.NotFoundMessage(CudaLibraryNames.FileNames(CudaLibraryNames.Driver)), 0, tried);
        int version = 0;
        try
        {
            CUresult status = CudaDriver.cuInit(0);
            if (status != CUresult.CUDA_SUCCESS)
                return Unavailable($"cuInit(0) failed: {CudaDriver.Describe(status)} (driver {driver.LoadedFrom})", 0, tried);
            CudaDriver.ThrowIfFailed(CudaDriver.cuDriverGetVersion(&version));
            int count;
            CudaDriver.ThrowIfFailed(CudaDriver.cuDeviceGetCount(&count));
            if (count == 0) return Unavailable($"the CUDA driver ({driver.LoadedFrom}) reports no device", version, tried);
            var devices = new CudaDeviceInfo[count];
            for (int i = 0; i < count; i++) devices[i] = ReadDevice(i);
            string reason = $"CUDA driver {VersionText(version)} ({driver.LoadedFrom}), {count} device{(count == 1 ? "" : "s")}: " +
                string.Join(", ", devices.Select(d => $"{d.Name} ({d.Architecture})"));
            return new CudaProbeResult(true, reason, version, devices, tried);
        }
        catch (Exception e) when (e is CudaException or EntryPointNotFoundException or DllNotFoundException or BadImageFormatException)
        {
            return Unavailable($"the CUDA driver ({driver.LoadedFrom}) failed: {e.Message}", version, tried);
        }
    }

    private static CudaDeviceInfo ReadDevice(int ordinal)
    {
        int device, major, minor, sms;
        nuint bytes;
        CudaDriver.ThrowIfFailed(CudaDriver.cuDeviceGet(&device, ordinal));
        const int NameCapacity = 256;
        byte* name = stackalloc byte[NameCapacity];
        CudaDriver.ThrowIfFailed(CudaDriver.cuDeviceGetName(name, NameCapacity, device));
        CudaDriver.ThrowIfFailed(CudaDriver.cuDeviceTotalMem(&bytes, device));
        CudaDriver.ThrowIfFailed(CudaDriver.cuDeviceGetAttribute(&major, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device));
        CudaDriver.ThrowIfFailed(CudaDriver.cuDeviceGetAttribute(&minor, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device));
        CudaDriver.ThrowIfFailed(CudaDriver.cuDeviceGetAttribute(&sms, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device));
        var span = new ReadOnlySpan<byte>(name, NameCapacity);
        int end = span.IndexOf((byte)0);
        string text = Encoding.UTF8.GetString(end >= 0 ? span[..end] : span);
        return new CudaDeviceInfo(ordinal, text, (long)bytes, major, minor, sms);
    }

    private static string VersionText(int version) => $"{version / 1000}.{version % 1000 / 10}";

    private static CudaProbeResult Unavailable(string reason, int version, IReadOnlyList<string> tried) =>
        new(false, reason, version, [], tried);
}

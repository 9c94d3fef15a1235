using LoraRuntime.Cpu;
using LoraRuntime.Cuda;
using LoraRuntime.Interop;

namespace LoraRuntime;

/// <summary>What a caller asked for: a device name, or <see cref="Auto"/> to let the runtime choose.</summary>
public enum DeviceRequest
{
    /// <summary>CUDA when it is usable, the CPU otherwise.</summary>
    Auto,
    /// <summary>The CPU, always.</summary>
    Cpu,
    /// <summary>CUDA, or an error saying why not.</summary>
    Cuda,
}

/// <summary>The device <see cref="Devices.Choose(string?)"/> picked and why.</summary>
/// <param name="Requested">What was asked for.</param>
/// <param name="RequestSource">Where the request came from ("LORA_DEVICE=cpu", "argument", "default").</param>
/// <param name="Kind">The chosen device.</param>
/// <param name="Reason">One sentence: why this device.</param>
/// <param name="Probe">What the CUDA probe found.</param>
public sealed record DeviceChoice(DeviceRequest Requested, string RequestSource, DeviceKind Kind, string Reason, CudaProbeResult Probe);

/// <summary>
/// Chooses the device and creates its backend: CUDA when the driver, a device and the CUDA backend are there,
/// the CPU otherwise. <c>LORA_DEVICE=cpu|cuda|auto</c> overrides the default (auto).
/// </summary>
public static class Devices
{
    /// <summary>The environment variable that forces a device.</summary>
    public const string EnvironmentVariable = "LORA_DEVICE";

    /// <summary>The accepted device names.</summary>
    public const string AllowedNames = "cpu, cuda or auto";

    private static readonly Lazy<CudaProbeResult> s_probe = new(CudaProbe.Probe);

    /// <summary>The CUDA probe, run once per process.</summary>
    public static CudaProbeResult Probe => s_probe.Value;

    private static readonly Lazy<string?> s_librariesProblem = new(FindLibrariesProblem);

    /// <summary>
    /// Why the CUDA backend cannot start although a GPU may be there — "cuBLAS not found: …" for the first of cuBLAS,
    /// cuSOLVER and NVRTC that does not load — or null when all three load. Looked up once per process.
    /// </summary>
    public static string? CudaLibrariesProblem => s_librariesProblem.Value;

    /// <summary>
    /// Chooses a device for <paramref name="device"/> ("cpu", "cuda", "auto"); null reads <c>LORA_DEVICE</c>
    /// (default auto). Throws <see cref="ArgumentException"/> for an unknown name and
    /// <see cref="InvalidOperationException"/>, with the probe's reason, when CUDA is required but unusable.
    /// </summary>
    public static DeviceChoice Choose(string? device = null) =>
        Choose(device, Environment.GetEnvironmentVariable(EnvironmentVariable), Probe, cudaBuilt: true,
            Probe.Available ? CudaLibrariesProblem : null);

    /// <summary>Creates the backend <see cref="Choose(string?)"/> picks.</summary>
    public static Backend Create(string? device = null) => Create(Choose(device));

    /// <summary>
    /// Creates the backend of an earlier <paramref name="choice"/>; a CUDA backend that fails to start (driver, cuBLAS,
    /// cuSOLVER) is an <see cref="InvalidOperationException"/> naming the failing call.
    /// </summary>
    public static Backend Create(DeviceChoice choice)
    {
        ArgumentNullException.ThrowIfNull(choice);
        return choice.Kind switch
        {
            DeviceKind.Cpu => new CpuBackend(),
            DeviceKind.Cuda => StartCuda(),
            _ => throw new InvalidOperationException($"no backend for {choice.Kind} in this build"),
        };
    }

    /// <summary>
    /// Parses a device name (case-insensitive, surrounding blanks ignored; empty means auto). Throws
    /// <see cref="ArgumentException"/> naming <paramref name="source"/>, the value and the allowed names.
    /// </summary>
    public static DeviceRequest ParseRequest(string? value, string source)
    {
        string text = value?.Trim() ?? "";
        if (text.Length == 0 || text.Equals("auto", StringComparison.OrdinalIgnoreCase)) return DeviceRequest.Auto;
        if (text.Equals("cpu", StringComparison.OrdinalIgnoreCase)) return DeviceRequest.Cpu;
        if (text.Equals("cuda", StringComparison.OrdinalIgnoreCase)) return DeviceRequest.Cuda;
        throw new ArgumentException($"{source}: unknown device '{value}'; expected {AllowedNames}"); // source is named in the message; it may be a variable, not a parameter
    }

    /// <summary>
    /// The choice for an explicit argument, the environment's value, a probe result, whether CUDA is built and why its
    /// libraries do not load (null when they do).
    /// </summary>
    internal static DeviceChoice Choose(string? device, string? environment, CudaProbeResult probe, bool cudaBuilt, string? librariesProblem = null)
    {
        DeviceRequest request;
        string source;
        if (device is not null)
        {
            request = ParseRequest(device, "device");
            source = $"requested {request.ToString().ToLowerInvariant()}";
        }
        else if (!string.IsNullOrWhiteSpace(environment))
        {
            request = ParseRequest(environment, EnvironmentVariable);
            source = $"{EnvironmentVariable}={environment.Trim()}";
        }
        else
        {
            request = DeviceRequest.Auto;
            source = "default (auto)";
        }

        string? cudaProblem = !probe.Available ? $"CUDA is unavailable: {probe.Reason}"
            : !cudaBuilt ? $"a CUDA GPU is present ({probe.Reason}) but the CUDA backend is not built yet"
            : librariesProblem is not null ? $"a CUDA GPU is present ({probe.Reason}) but {librariesProblem}"
            : null;
        return request switch
        {
            DeviceRequest.Cpu => new DeviceChoice(request, source, DeviceKind.Cpu, $"{source}: the CPU", probe),
            DeviceRequest.Cuda when cudaProblem is null =>
                new DeviceChoice(request, source, DeviceKind.Cuda, $"{source}: {probe.Reason}", probe),
            DeviceRequest.Cuda => throw new InvalidOperationException($"{source}, but {cudaProblem}"),
            _ when cudaProblem is null => new DeviceChoice(request, source, DeviceKind.Cuda, probe.Reason, probe),
            _ => new DeviceChoice(request, source, DeviceKind.Cpu, $"the CPU, because {cudaProblem}", probe),
        };
    }

    /// <summary>The CUDA backend on device 0; a driver or library that refuses to start is an <see cref="InvalidOperationException"/>.</summary>
    private static CudaBackend StartCuda()
    {
        try
        {
            // The ranks of a job on one machine spread over its GPUs (NCCL needs one each).
            int devices = Math.Max(1, Probe.Devices.Count);
            return new CudaBackend(Distributed.DistributedLaunch.Detect().LocalRank % devices);
        }
        catch (Exception e) when (e is CudaException or CudaLibraryException or DllNotFoundException or EntryPointNotFoundException)
        {
            throw new InvalidOperationException($"the CUDA backend failed to start: {e.Message}", e);
        }
    }

    private static string? FindLibrariesProblem()
    {
        foreach (var (library, title) in (ReadOnlySpan<(string, string)>)[(CudaLibraryNames.Cublas, "cuBLAS"), (CudaLibraryNames.Cusolver, "cuSOLVER"),
            (CudaLibraryNames.Nvrtc, "NVRTC")])
        {
            var result = NativeLibraryResolver.Load(library);
            if (!result.IsLoaded) return $"{title} did not load: {result.NotFoundMessage(CudaLibraryNames.FileNames(library))}";
        }
        return null;
    }
}

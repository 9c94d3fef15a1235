using System.Text.Json.Serialization;
using LoraRuntime.Cpu;
using LoraRuntime.Interop;
using LoraRuntime.Memory;

namespace LoraRuntime.Cli.Info;

/// <summary>The device choice: what was asked, what was chosen and why (or the error that prevents a choice).</summary>
internal sealed record DeviceSection(string Requested, string? Chosen, string Reason);

/// <summary>Where the library search looked: the folders, and the sources that gave none.</summary>
internal sealed record SearchSection(IReadOnlyList<string> Folders, IReadOnlyList<string> Notes);

/// <summary>One CUDA library: where it loaded from, or every place tried (beyond the search notes).</summary>
internal sealed record LibrarySection(string Name, string? LoadedFrom, IReadOnlyList<string> Tried);

/// <summary>The CPU: SIMD features, cores, worker threads, GEMM kernel.</summary>
internal sealed record CpuSection(IReadOnlyList<string> Features, int VectorBits, int LogicalCores, int WorkerThreads, string GemmKernel);

/// <summary>The CUDA backend when it is the chosen device: its compiler, kernel cache and GEMM paths (null otherwise).</summary>
internal sealed record CudaBackendSection(string Name, string Nvrtc, string KernelCache, bool GroupedGemm, PoolStats Pool, string? Error = null);

/// <summary>Everything <c>lora info</c> reports.</summary>
internal sealed record InfoReport(
    DeviceSection Device, CudaProbeResult Cuda, SearchSection Search, IReadOnlyList<LibrarySection> Libraries,
    CpuSection Cpu, PoolStats CpuPool, CudaBackendSection? CudaBackend = null)
{
    /// <summary>
    /// Probes everything for <paramref name="device"/> (null: <c>LORA_DEVICE</c>, else auto). Never throws for a missing
    /// GPU or library, or a bad device name: <see cref="DeviceSection.Chosen"/> is then null and the reason says why.
    /// </summary>
    public static InfoReport Gather(string? device = null)
    {
        DeviceSection section;
        CudaBackendSection? cudaBackend = null;
        try
        {
            var choice = Devices.Choose(device);
            section = new DeviceSection(choice.RequestSource, choice.Kind.ToString().ToLowerInvariant(), choice.Reason);
            if (choice.Kind == DeviceKind.Cuda) cudaBackend = DescribeCudaBackend();
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            // LORA_DEVICE names an unknown device, or CUDA it cannot have: show why instead of a choice.
            string requested = device is not null ? $"requested {device}"
                : $"{Devices.EnvironmentVariable}={Environment.GetEnvironmentVariable(Devices.EnvironmentVariable)}";
            section = new DeviceSection(requested, null, e.Message);
        }

        var plan = LibrarySearchPlan.FromEnvironment();
        var libraries = new List<LibrarySection>();
        foreach (string name in CudaLibraryNames.All)
        {
            var result = NativeLibraryResolver.Load(name);
            libraries.Add(new LibrarySection(name, result.LoadedFrom, result.Tried.Where(t => !plan.Notes.Contains(t)).ToArray()));
        }

        using var cpu = new CpuBackend();
        var cpuSection = new CpuSection(CpuFeatures.Supported, CpuFeatures.VectorBits, CpuFeatures.LogicalCores,
            CpuFeatures.WorkerThreads, cpu.GemmKernel);
        return new InfoReport(section, Devices.Probe, new SearchSection(plan.Directories.Select(d => $"{d.Path} ({d.Source})").ToArray(), plan.Notes),
            libraries, cpuSection, cpu.Pool.Stats, cudaBackend);
    }

    /// <summary>Starts the CUDA backend once and reads what it runs on.</summary>
    private static CudaBackendSection DescribeCudaBackend()
    {
        try
        {
            return StartCudaBackend();
        }
        catch (Exception e) when (e is CudaException or CudaLibraryException or InvalidOperationException or DllNotFoundException
            or EntryPointNotFoundException)
        {
            return new CudaBackendSection("cuda:0", "", LoraRuntime.Cuda.KernelCache.Folder, false, default, $"the CUDA backend failed to start: {e.Message}");
        }
    }

    private static CudaBackendSection StartCudaBackend()
    {
        using var backend = new LoraRuntime.Cuda.CudaBackend();
        return new CudaBackendSection(backend.Name, LoraRuntime.Cuda.KernelCompiler.IsAvailable(out string nvrtc) ? nvrtc : $"unavailable: {nvrtc}",
            LoraRuntime.Cuda.KernelCache.Folder, LoraRuntime.Cuda.CudaBackend.GroupedGemmAvailable, backend.Pool.Stats);
    }
}

/// <summary>Source-generated JSON for <see cref="InfoReport"/>.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true)]
[JsonSerializable(typeof(InfoReport))]
internal sealed partial class InfoJsonContext : JsonSerializerContext;

using System.Text.Json.Serialization;
using LoraRuntime.Cpu;
using LoraRuntime.Cuda;
using LoraRuntime.Distributed;
using LoraRuntime.Memory;

namespace LoraRuntime.Cli.Info;

/// <summary>The device choice: what was asked, what was chosen and why (or the error that prevents a choice).</summary>
internal sealed record DeviceSection(string Requested, string? Chosen, string Reason);

/// <summary>Where the library search looked: the folders, and the sources that gave none.</summary>
internal sealed record SearchSection(IReadOnlyList<string> Folders, IReadOnlyList<string> Notes);

/// <summary>The CPU: SIMD features, cores, worker threads, GEMM kernel, the Q8_0/Q4_0 inference product's kernel.</summary>
internal sealed record CpuSection(IReadOnlyList<string> Features, int VectorBits, int LogicalCores, int WorkerThreads, string GemmKernel, string IntegerKernel, string Bf16Kernel);

/// <summary>The job: this process's rank among how many, how they talk, the library, and what told us.</summary>
internal sealed record DistributedSection(int Ranks, int Rank, string Transport, string Library, string Launch, string Host);

/// <summary>Everything <c>lora info</c> reports.</summary>
internal sealed record InfoReport(
    DeviceSection Device, CudaProbeResult Cuda, SearchSection Search, IReadOnlyList<CudaLibraryStatus> Libraries,
    CpuSection Cpu, PoolStats CpuPool, DistributedSection Distributed, CudaBackendReport? CudaBackend = null)
{
    /// <summary>
    /// Probes everything for <paramref name="device"/> (null: <c>LORA_DEVICE</c>, else auto). Never throws for a missing
    /// GPU or library, or a bad device name: <see cref="DeviceSection.Chosen"/> is then null and the reason says why.
    /// </summary>
    public static InfoReport Gather(string? device = null, Communicator? world = null)
    {
        world ??= Communicator.SingleProcess;
        var launch = DistributedLaunch.Detect();
        var distributed = new DistributedSection(world.Size, world.Rank, world.Transport,
            world.Transport == "none" ? "Open MPI: " + MpiCommunicator.ProbeLibrary() : world.Library,
            launch.ByLauncher ? $"launched by mpirun ({launch.Source})" : "not launched by mpirun: one process", world.Host);
        DeviceSection section;
        CudaBackendReport? cudaBackend = null;
        try
        {
            var choice = Devices.Choose(device);
            section = new DeviceSection(choice.RequestSource, choice.Kind.ToString().ToLowerInvariant(), choice.Reason);
            if (choice.Kind == DeviceKind.Cuda) cudaBackend = CudaEnvironment.DescribeBackend();
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            // LORA_DEVICE names an unknown device, or CUDA it cannot have: show why instead of a choice.
            string requested = device is not null ? $"requested {device}"
                : $"{Devices.EnvironmentVariable}={Environment.GetEnvironmentVariable(Devices.EnvironmentVariable)}";
            section = new DeviceSection(requested, null, e.Message);
        }

        var libraries = CudaEnvironment.Libraries();

        using var cpu = new CpuBackend();
        var cpuSection = new CpuSection(CpuFeatures.Supported, CpuFeatures.VectorBits, CpuFeatures.LogicalCores,
            CpuFeatures.WorkerThreads, cpu.GemmKernel, cpu.IntegerKernel, cpu.Bf16Kernel);
        return new InfoReport(section, Devices.Probe, new SearchSection(libraries.Folders, libraries.Notes), libraries.Libraries, cpuSection,
            cpu.Pool.Stats, distributed, cudaBackend);
    }
}

/// <summary>Source-generated JSON for <see cref="InfoReport"/>.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true)]
[JsonSerializable(typeof(InfoReport))]
internal sealed partial class InfoJsonContext : JsonSerializerContext;

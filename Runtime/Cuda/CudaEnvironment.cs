using LoraRuntime.Interop;
using LoraRuntime.Memory;

namespace LoraRuntime.Cuda;

/// <summary>One CUDA library as the resolver found it: where it loaded from, or every place tried.</summary>
/// <param name="Name">The library (<c>cuda</c>, <c>cublas</c>, <c>cublasLt</c>, <c>cusolver</c>, <c>nvrtc</c>).</param>
/// <param name="LoadedFrom">The file that loaded, or null.</param>
/// <param name="Tried">Each place tried with why it did not load (the search's general notes left out).</param>
public sealed record CudaLibraryStatus(string Name, string? LoadedFrom, IReadOnlyList<string> Tried);

/// <summary>Where the CUDA libraries are looked for, in order, and what each search found.</summary>
/// <param name="Folders">The folders searched, each with the source that named it (an environment variable, a wheel, …).</param>
/// <param name="Notes">Sources that named no folder, and why.</param>
/// <param name="Libraries">Each library's result.</param>
public sealed record CudaLibraryReport(IReadOnlyList<string> Folders, IReadOnlyList<string> Notes, IReadOnlyList<CudaLibraryStatus> Libraries);

/// <summary>The CUDA backend as it starts on this machine: its device, compiler, kernel cache and GEMM paths.</summary>
/// <param name="Name">The device ("cuda:0").</param>
/// <param name="Nvrtc">The NVRTC version, or why it is unavailable.</param>
/// <param name="KernelCache">The folder compiled kernels are cached in.</param>
/// <param name="GroupedGemm">True when cuBLAS has GemmGroupedBatchedEx (else grouped GEMMs loop per problem).</param>
/// <param name="Pool">The device pool's counters.</param>
/// <param name="Error">Why the backend failed to start, or null.</param>
public sealed record CudaBackendReport(string Name, string Nvrtc, string KernelCache, bool GroupedGemm, PoolStats Pool, string? Error = null);

/// <summary>
/// What <c>lora info</c> and a service's diagnostics report of CUDA beyond the device choice (<see cref="Devices"/>):
/// the library search and a trial start of the backend. Never throws for a missing GPU or library: that is a result.
/// </summary>
public static class CudaEnvironment
{
    /// <summary>The library search plan (from the environment) and each library's result.</summary>
    public static CudaLibraryReport Libraries()
    {
        var plan = LibrarySearchPlan.FromEnvironment();
        var libraries = new List<CudaLibraryStatus>();
        foreach (string name in CudaLibraryNames.All)
        {
            var result = NativeLibraryResolver.Load(name);
            libraries.Add(new CudaLibraryStatus(name, result.LoadedFrom, result.Tried.Where(t => !plan.Notes.Contains(t)).ToArray()));
        }
        return new CudaLibraryReport(plan.Directories.Select(d => $"{d.Path} ({d.Source})").ToArray(), plan.Notes, libraries);
    }

    /// <summary>The name of the driver library, which <see cref="Devices.Probe"/> reports on its own.</summary>
    public static string DriverLibrary => CudaLibraryNames.Driver;

    /// <summary>Starts the CUDA backend once and reads what it runs on; a failure to start is reported in <see cref="CudaBackendReport.Error"/>.</summary>
    public static CudaBackendReport DescribeBackend()
    {
        try
        {
            using var backend = new CudaBackend();
            return new CudaBackendReport(backend.Name, KernelCompiler.IsAvailable(out string nvrtc) ? nvrtc : $"unavailable: {nvrtc}",
                KernelCache.Folder, CudaBackend.GroupedGemmAvailable, backend.Pool.Stats);
        }
        catch (Exception e) when (e is CudaException or CudaLibraryException or InvalidOperationException or DllNotFoundException
            or EntryPointNotFoundException)
        {
            return new CudaBackendReport("cuda:0", "", KernelCache.Folder, false, default, $"the CUDA backend failed to start: {e.Message}");
        }
    }
}

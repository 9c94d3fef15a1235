namespace LoraRuntime.Interop;

/// <summary>
/// The CUDA libraries the runtime binds, by the short name used in <c>[LibraryImport]</c>, with their file names
/// (CUDA 13 before CUDA 12) and the libraries each needs loaded first. See shared/cuda/SIGNATURES.md.
/// </summary>
public static class CudaLibraryNames
{
    /// <summary>The driver API (libcuda).</summary>
    public const string Driver = "cuda";

    /// <summary>cuBLASLt (a dependency of cuBLAS).</summary>
    public const string CublasLt = "cublasLt";

    /// <summary>cuBLAS.</summary>
    public const string Cublas = "cublas";

    /// <summary>cuSPARSE (a dependency of cuSOLVER).</summary>
    public const string Cusparse = "cusparse";

    /// <summary>nvJitLink (a dependency of cuSOLVER).</summary>
    public const string NvJitLink = "nvJitLink";

    /// <summary>cuSOLVER.</summary>
    public const string Cusolver = "cusolver";

    /// <summary>The runtime compiler.</summary>
    public const string Nvrtc = "nvrtc";

    /// <summary>NCCL, the collectives between GPUs (data-parallel training; not in <see cref="All"/>: only a job of several ranks loads it).</summary>
    public const string Nccl = "nccl";

    /// <summary>Every library the resolver knows, dependencies before their dependents.</summary>
    public static IReadOnlyList<string> All { get; } = [Driver, CublasLt, Cublas, Cusparse, NvJitLink, Cusolver, Nvrtc];

    /// <summary>The file names to try for <paramref name="library"/>, newest CUDA first; empty for an unknown name.</summary>
    public static IReadOnlyList<string> FileNames(string library) => library switch
    {
        Driver => ["libcuda.so.1"],
        CublasLt => ["libcublasLt.so.13", "libcublasLt.so.12"],
        Cublas => ["libcublas.so.13", "libcublas.so.12"],
        Cusparse => ["libcusparse.so.12"],
        NvJitLink => ["libnvJitLink.so.13", "libnvJitLink.so.12"],
        Cusolver => ["libcusolver.so.12", "libcusolver.so.11"],
        // Debian's NVRTC from CUDA 11.8 (package libnvrtc11.2) comes last: it lets a machine without a GPU compile the
        // kernels for sm_80/sm_90 (the compile test); where a CUDA 12 or 13 toolkit is present, that one wins.
        Nvrtc => ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2"],
        Nccl => ["libnccl.so.2"],
        _ => [],
    };

    /// <summary>
    /// The file-name prefix of a library that <paramref name="library"/> opens by itself at run time and that should come
    /// from the same folder (NVRTC's <c>libnvrtc-builtins.so.*</c>); null when there is none.
    /// </summary>
    public static string? CompanionPrefix(string library) => library == Nvrtc ? "libnvrtc-builtins.so" : null;

    /// <summary>
    /// Libraries to load (by absolute path) before <paramref name="library"/>: once a soname is loaded the system
    /// loader reuses it, so the dependent finds the same copy instead of searching on its own.
    /// </summary>
    public static IReadOnlyList<string> Dependencies(string library) => library switch
    {
        Cublas => [CublasLt],
        Cusolver => [NvJitLink, Cusparse, CublasLt, Cublas],
        _ => [],
    };
}

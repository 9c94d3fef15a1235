using LoraRuntime.Cuda;
using Xunit;

namespace LoraRuntime.Tests.Cuda;

/// <summary>
/// Every kernel file of native/ compiles through our NVRTC bindings for Ampere (sm_80) and Hopper (sm_90). Needs only
/// NVRTC (CI installs Debian's libnvrtc11.2, NVRTC 11.8), no GPU; skips with the resolver's reason where none loads.
/// </summary>
public sealed class KernelCompileTests
{
    public static TheoryData<string, string> Files()
    {
        var data = new TheoryData<string, string>();
        foreach (string file in KernelSources.KernelFiles)
            foreach (string architecture in new[] { "sm_80", "sm_90" })
                data.Add(file, architecture);
        return data;
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void Kernel_file_compiles_to_a_cubin(string file, string architecture)
    {
        Assert.SkipUnless(KernelCompiler.IsAvailable(out string reason), $"no NVRTC: {reason}");
        byte[] cubin = KernelCompiler.CompileCubin(file, architecture, out string log);
        // A CUBIN is an ELF image.
        Assert.True(cubin.Length > 64 && cubin[0] == 0x7f && cubin[1] == (byte)'E' && cubin[2] == (byte)'L' && cubin[3] == (byte)'F',
            $"{file} for {architecture}: NVRTC returned {cubin.Length} bytes that are not an ELF image; log: {log}");
        Assert.DoesNotContain("warning", log, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void Every_source_file_of_native_is_embedded()
    {
        string native = Path.Combine(RepositoryRoot(), "native");
        var onDisk = Directory.EnumerateFiles(native).Select(Path.GetFileName).Where(f => f!.EndsWith(".cu") || f.EndsWith(".cuh")).Order().ToArray();
        Assert.Equal(onDisk, KernelSources.All.Keys.Order().ToArray());
        Assert.Contains(KernelSources.HeaderName, KernelSources.All.Keys);
    }

    [Fact]
    public void A_compile_error_carries_the_compiler_log()
    {
        Assert.SkipUnless(KernelCompiler.IsAvailable(out string reason), $"no NVRTC: {reason}");
        var e = Assert.Throws<LoraRuntime.Interop.CudaLibraryException>(() =>
            KernelCompiler.CompileCubin("broken.cu", "extern \"C\" __global__ void k(float* x) { x[0] = undeclared_name; }", "sm_80", out _));
        Assert.Contains("NVRTC_ERROR_COMPILATION", e.Message);
        Assert.Contains("undeclared_name", e.Message);
    }

    [Fact]
    public void A_virtual_architecture_is_refused_with_the_reason()
    {
        var e = Assert.Throws<ArgumentException>(() => KernelCompiler.CompileCubin("gelu.cu", "compute_90", out _));
        Assert.Equal("architecture", e.ParamName);
        Assert.Contains("compute_90", e.Message);
    }

    internal static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (Directory.Exists(Path.Combine(dir.FullName, "native")) && File.Exists(Path.Combine(dir.FullName, "LoraRuntime.sln")))
                return dir.FullName;
        throw new InvalidOperationException($"no repository root (with native/ and LoraRuntime.sln) above {AppContext.BaseDirectory}");
    }
}

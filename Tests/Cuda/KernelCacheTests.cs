using LoraRuntime.Cuda;
using Xunit;

namespace LoraRuntime.Tests.Cuda;

/// <summary>The on-disk CUBIN cache (needs NVRTC, no GPU).</summary>
public sealed class KernelCacheTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), $"lora-kernel-cache-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_folder)) Directory.Delete(_folder, recursive: true);
    }

    [Fact]
    public void A_compiled_kernel_file_is_served_from_the_cache_the_second_time()
    {
        Assert.SkipUnless(KernelCompiler.IsAvailable(out string reason), $"no NVRTC: {reason}");
        byte[] first = KernelCache.Get("adamw.cu", "sm_80", _folder, out bool firstCached);
        byte[] second = KernelCache.Get("adamw.cu", "sm_80", _folder, out bool secondCached);
        Assert.False(firstCached);
        Assert.True(secondCached);
        Assert.Equal(first, second);
        string file = Assert.Single(Directory.GetFiles(_folder));
        Assert.Equal(KernelCache.FileName("adamw.cu", "sm_80", KernelCompiler.VersionText), Path.GetFileName(file));
    }

    [Fact]
    public void A_torn_cache_file_is_compiled_again()
    {
        Assert.SkipUnless(KernelCompiler.IsAvailable(out string reason), $"no NVRTC: {reason}");
        Directory.CreateDirectory(_folder);
        string path = Path.Combine(_folder, KernelCache.FileName("dropout.cu", "sm_90", KernelCompiler.VersionText));
        File.WriteAllBytes(path, [1, 2, 3]);
        byte[] cubin = KernelCache.Get("dropout.cu", "sm_90", _folder, out bool cached);
        Assert.False(cached);
        Assert.Equal((byte)0x7f, cubin[0]);
        Assert.Equal(cubin, File.ReadAllBytes(path));
    }
}

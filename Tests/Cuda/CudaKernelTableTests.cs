using LoraRuntime.Cuda;
using Xunit;

namespace LoraRuntime.Tests.Cuda;

/// <summary>The backend's kernel table names kernels that its files define (checked on the sources, no GPU needed).</summary>
public sealed class CudaKernelTableTests
{
    [Fact]
    public void Every_kernel_of_the_table_is_defined_in_its_file()
    {
        foreach (var kernel in Enum.GetValues<CudaKernel>())
        {
            var (file, name) = CudaKernels.Entry(kernel);
            Assert.Contains($"extern \"C\" __global__ void {name}(", KernelSources.Get(file));
        }
    }

    [Fact]
    public void The_decoder_numbers_the_formats_as_WeightFormat_does()
    {
        string source = KernelSources.Get("dequantize.cu");
        foreach (var format in Enum.GetValues<WeightFormat>().Where(f => f != WeightFormat.F32))
            Assert.Contains($"#define FORMAT_{format.ToString().ToUpperInvariant()} {(int)format}\n", source.ReplaceLineEndings("\n"));
    }

    [Fact]
    public void The_cache_key_changes_with_architecture_and_compiler()
    {
        string a = KernelCache.FileName("gelu.cu", "sm_90", "12.8"), b = KernelCache.FileName("gelu.cu", "sm_80", "12.8");
        string c = KernelCache.FileName("gelu.cu", "sm_90", "13.0"), d = KernelCache.FileName("softmax.cu", "sm_90", "12.8");
        Assert.Equal(4, new[] { a, b, c, d }.Distinct().Count());
        Assert.StartsWith("gelu-sm_90-nvrtc12.8-", a);
        Assert.Equal(a, KernelCache.FileName("gelu.cu", "sm_90", "12.8"));
    }

    [Fact]
    public void Without_a_GPU_the_backend_refuses_with_the_probe_reason()
    {
        if (Devices.Probe.Available) Assert.Skip($"a GPU is present: {Devices.Probe.Reason}");
        var e = Assert.Throws<InvalidOperationException>(() => new CudaBackend());
        Assert.Contains(Devices.Probe.Reason, e.Message);
    }
}

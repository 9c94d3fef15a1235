using LoraRuntime.Cuda;
using LoraRuntime.Interop;
using Xunit;

namespace LoraRuntime.Tests.Cuda;

public sealed class CudaProbeTests
{
    [Fact]
    public void Without_a_GPU_the_probe_says_unavailable_and_why()
    {
        var probe = CudaProbe.Probe();
        if (probe.Available) Assert.Skip($"a GPU is present: {probe.Reason}");

        Assert.False(probe.Available);
        Assert.False(string.IsNullOrWhiteSpace(probe.Reason));
        Assert.Empty(probe.Devices);
        if (!NativeLibraryResolver.Load(CudaLibraryNames.Driver).IsLoaded)
        {
            Assert.StartsWith("libcuda.so.1 not found; tried: ", probe.Reason);
            Assert.NotEmpty(probe.Tried);
            Assert.Equal("none", probe.DriverVersionText);
        }
    }

    [Fact]
    public void Probing_twice_gives_the_same_answer()
    {
        var first = CudaProbe.Probe();
        var second = CudaProbe.Probe();
        Assert.Equal(first.Available, second.Available);
        Assert.Equal(first.Reason, second.Reason);
    }

    [Fact]
    public void With_a_GPU_every_device_is_described()
    {
        var probe = CudaProbe.Probe();
        if (!probe.Available) Assert.Skip($"no GPU: {probe.Reason}");

        Assert.True(probe.DriverVersion >= 12000);
        Assert.NotEmpty(probe.Devices);
        foreach (var device in probe.Devices)
        {
            Assert.False(string.IsNullOrWhiteSpace(device.Name));
            Assert.True(device.TotalMemoryBytes > 0);
            Assert.True(device.ComputeCapabilityMajor >= 5);
            Assert.True(device.MultiprocessorCount > 0);
        }
    }

    [Fact]
    public void ThrowIfFailed_passes_success_and_names_the_call_and_status_of_a_failure()
    {
        CudaDriver.ThrowIfFailed(CUresult.CUDA_SUCCESS);

        var e = Assert.Throws<CudaException>(() => CudaDriver.ThrowIfFailed(Fails(CUresult.CUDA_ERROR_NO_DEVICE)));
        Assert.Equal("Fails(CUresult.CUDA_ERROR_NO_DEVICE)", e.Call);
        Assert.Equal(CUresult.CUDA_ERROR_NO_DEVICE, e.Status);
        Assert.Contains("Fails(CUresult.CUDA_ERROR_NO_DEVICE)", e.Message);
        Assert.Contains("CUDA_ERROR_NO_DEVICE (100)", e.Message);
    }

    [Fact]
    public void Status_values_match_the_header()
    {
        Assert.Equal(0, (int)CUresult.CUDA_SUCCESS);
        Assert.Equal(100, (int)CUresult.CUDA_ERROR_NO_DEVICE);
        Assert.Equal(222, (int)CUresult.CUDA_ERROR_UNSUPPORTED_PTX_VERSION);
        Assert.Equal(999, (int)CUresult.CUDA_ERROR_UNKNOWN);
        Assert.Equal(16, (int)CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
        Assert.Equal(75, (int)CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
        Assert.Equal(76, (int)CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
    }

    private static CUresult Fails(CUresult status) => status;
}

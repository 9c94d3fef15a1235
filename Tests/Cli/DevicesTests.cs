using LoraRuntime.Cuda;
using LoraRuntime.Cpu;
using LoraRuntime.Interop;
using Xunit;

namespace LoraRuntime.Tests.Cli;

public sealed class DevicesTests
{
    private static readonly CudaProbeResult NoGpu = new(false, "libcuda.so.1 not found; tried: somewhere", 0, [], ["somewhere"]);
    private static readonly CudaProbeResult OneGpu = new(true, "CUDA driver 13.0, 1 device: H100 (sm_90)", 13000,
        [new CudaDeviceInfo(0, "H100", 80L << 30, 9, 0, 132)], []);

    [Fact]
    public void Cpu_creates_a_CpuBackend()
    {
        using var backend = Devices.Create("cpu");
        Assert.IsType<CpuBackend>(backend);
        Assert.Equal(DeviceKind.Cpu, backend.Kind);
    }

    [Fact]
    public void Cuda_without_a_usable_GPU_throws_with_the_probe_reason()
    {
        if (Devices.Probe.Available && Devices.CudaLibrariesProblem is null) Assert.Skip($"CUDA is usable here: {Devices.Probe.Reason}");
        var e = Assert.Throws<InvalidOperationException>(() => Devices.Create("cuda"));
        Assert.Contains(Devices.Probe.Available ? Devices.CudaLibrariesProblem! : Devices.Probe.Reason, e.Message);
    }

    [Fact]
    public void Cuda_with_a_usable_GPU_creates_a_CudaBackend()
    {
        Assert.SkipUnless(Devices.Probe.Available && Devices.CudaLibrariesProblem is null,
            $"CUDA is not usable here: {(Devices.Probe.Available ? Devices.CudaLibrariesProblem : Devices.Probe.Reason)}");
        using var backend = Devices.Create("cuda");
        Assert.IsType<LoraRuntime.Cuda.CudaBackend>(backend);
        Assert.Equal(DeviceKind.Cuda, backend.Kind);
        Assert.Equal("cuda:0", backend.Name);
    }

    [Fact]
    public void Auto_with_a_GPU_but_missing_libraries_chooses_the_cpu_and_names_the_library()
    {
        var choice = Devices.Choose(null, null, OneGpu, cudaBuilt: true, librariesProblem: "cuBLAS did not load: libcublas.so.13 not found");
        Assert.Equal(DeviceKind.Cpu, choice.Kind);
        Assert.Contains("cuBLAS did not load", choice.Reason);
        var e = Assert.Throws<InvalidOperationException>(() =>
            Devices.Choose("cuda", null, OneGpu, cudaBuilt: true, librariesProblem: "cuBLAS did not load: libcublas.so.13 not found"));
        Assert.Contains("cuBLAS did not load", e.Message);
    }

    [Fact]
    public void An_unknown_device_names_the_value_and_the_allowed_ones()
    {
        var e = Assert.Throws<ArgumentException>(() => Devices.Create("tpu"));
        Assert.Contains("'tpu'", e.Message);
        Assert.Contains("cpu, cuda or auto", e.Message);
    }

    [Theory]
    [InlineData("cpu", DeviceRequest.Cpu)]
    [InlineData("CPU", DeviceRequest.Cpu)]
    [InlineData(" cuda ", DeviceRequest.Cuda)]
    [InlineData("Auto", DeviceRequest.Auto)]
    [InlineData("", DeviceRequest.Auto)]
    [InlineData(null, DeviceRequest.Auto)]
    public void Device_names_parse_case_insensitively(string? value, DeviceRequest expected) =>
        Assert.Equal(expected, Devices.ParseRequest(value, "LORA_DEVICE"));

    [Theory]
    [InlineData("gpu")]
    [InlineData("cuda:0")]
    [InlineData("cpu,cuda")]
    public void Unknown_device_names_are_rejected_naming_the_source(string value)
    {
        var e = Assert.Throws<ArgumentException>(() => Devices.ParseRequest(value, "LORA_DEVICE"));
        Assert.StartsWith("LORA_DEVICE: unknown device", e.Message);
        Assert.Contains(value, e.Message);
    }

    [Fact]
    public void LORA_DEVICE_cpu_forces_the_cpu_even_with_a_GPU()
    {
        var choice = Devices.Choose(null, "cpu", OneGpu, cudaBuilt: true);
        Assert.Equal(DeviceKind.Cpu, choice.Kind);
        Assert.Equal(DeviceRequest.Cpu, choice.Requested);
        Assert.Equal("LORA_DEVICE=cpu", choice.RequestSource);
    }

    [Fact]
    public void LORA_DEVICE_cuda_without_a_GPU_throws_with_the_reason()
    {
        var e = Assert.Throws<InvalidOperationException>(() => Devices.Choose(null, "cuda", NoGpu, cudaBuilt: true));
        Assert.Contains("LORA_DEVICE=cuda", e.Message);
        Assert.Contains(NoGpu.Reason, e.Message);
    }

    [Fact]
    public void A_bad_LORA_DEVICE_is_an_argument_error_naming_the_variable()
    {
        var e = Assert.Throws<ArgumentException>(() => Devices.Choose(null, "tpu", NoGpu, cudaBuilt: false));
        Assert.Contains("LORA_DEVICE", e.Message);
    }

    [Fact]
    public void An_explicit_argument_overrides_LORA_DEVICE()
    {
        var choice = Devices.Choose("cpu", "cuda", NoGpu, cudaBuilt: false);
        Assert.Equal(DeviceKind.Cpu, choice.Kind);
        Assert.Equal("requested cpu", choice.RequestSource);
    }

    [Fact]
    public void Auto_without_a_GPU_chooses_the_cpu_with_the_probe_reason()
    {
        var choice = Devices.Choose(null, null, NoGpu, cudaBuilt: true);
        Assert.Equal(DeviceKind.Cpu, choice.Kind);
        Assert.Equal(DeviceRequest.Auto, choice.Requested);
        Assert.Contains(NoGpu.Reason, choice.Reason);
        Assert.DoesNotContain("not built", choice.Reason);
    }

    [Fact]
    public void Auto_with_a_GPU_but_no_CUDA_backend_chooses_the_cpu_and_says_so()
    {
        var choice = Devices.Choose(null, "auto", OneGpu, cudaBuilt: false);
        Assert.Equal(DeviceKind.Cpu, choice.Kind);
        Assert.Contains("CUDA backend is not built yet", choice.Reason);
    }

    [Fact]
    public void Auto_with_a_GPU_and_a_CUDA_backend_chooses_CUDA()
    {
        var choice = Devices.Choose(null, null, OneGpu, cudaBuilt: true);
        Assert.Equal(DeviceKind.Cuda, choice.Kind);
        Assert.Same(OneGpu, choice.Probe);
    }
}

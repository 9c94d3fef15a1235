using LoraRuntime.Cli;
using LoraRuntime.Cli.Bench;
using Xunit;

namespace LoraRuntime.Tests.Cli;

/// <summary>The <c>lora</c> command run in-process: exit codes and messages.</summary>
public sealed class CommandLineTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("lora-cli-").FullName;
    private readonly StringWriter _out = new(), _error = new();

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private int Run(params string[] args) => LoraApp.Run(args, Terminal.ForWriters(_out, _error));

    [Fact]
    public void A_bad_shape_is_exit_code_2_with_a_message_naming_the_option_and_token_and_no_stack_trace()
    {
        Assert.Equal(ExitCodes.Usage, Run("bench", "gemm", "--shapes", "12x,8x8x8"));
        string error = _error.ToString();
        Assert.Contains("error: --shapes: bad shape '12x'", error);
        Assert.DoesNotContain("   at ", error);
    }

    [Fact]
    public void Cuda_on_a_machine_without_it_is_exit_code_2_saying_why()
    {
        if (Devices.Probe.Available && Devices.CudaLibrariesProblem is null) Assert.Skip($"CUDA is usable here: {Devices.Probe.Reason}");
        Assert.Equal(ExitCodes.Usage, Run("bench", "gemm", "--device", "cuda", "--shapes", "4x4x4"));
        string error = _error.ToString();
        Assert.Contains("--device cuda", error);
        Assert.Contains(Devices.Probe.Available ? "did not load" : "CUDA is unavailable", error);
    }

    [Fact]
    public void An_unknown_device_or_option_is_exit_code_2()
    {
        Assert.Equal(ExitCodes.Usage, Run("bench", "gemm", "--device", "tpu"));
        Assert.Contains("--device: unknown device 'tpu'", _error.ToString());
        Assert.Equal(ExitCodes.Usage, Run("bench", "gemm", "--no-such-option"));
        Assert.Equal(ExitCodes.Usage, Run("bench", "gemm", "--warmup", "-1"));
    }

    [Fact]
    public void Bench_gemm_prints_a_table_and_writes_json()
    {
        string json = Path.Combine(_folder, "gemm.json");
        Assert.Equal(ExitCodes.Success,
            Run("bench", "gemm", "--device", "cpu", "--shapes", "8x8x8,3x5x7", "--trans", "TN", "--warmup", "1", "--reps", "5", "--json", json));
        string output = _out.ToString();
        Assert.Contains("8x8x8", output);
        Assert.Contains("3x5x7", output);
        Assert.Contains("GFLOP/s", output);
        var records = BenchReport.ReadJson(json);
        Assert.Equal(2, records.Length);
        Assert.All(records, r => Assert.Equal("TN", r.Trans));
    }

    [Fact]
    public void Bench_lora_times_the_four_cases_against_the_base()
    {
        string json = Path.Combine(_folder, "lora.json");
        Assert.Equal(ExitCodes.Success,
            Run("bench", "lora", "--device", "cpu", "--t", "1,5", "--channels", "32", "--rank", "4", "--warmup", "1", "--reps", "3", "--json", json));
        Assert.Contains("lora_merged_forward", _out.ToString());
        var records = BenchReport.ReadJson(json);
        Assert.Equal(["linear_forward", "lora_forward", "lora_merged_forward", "lora_backward"], records.Take(4).Select(r => r.Op));
        Assert.Equal(8, records.Length);
        Assert.All(records, r => Assert.Equal([r.Shape[0], 32, 4], r.Shape));
        Assert.All(records.Where(r => r.Op.EndsWith("forward", StringComparison.Ordinal)), r => Assert.InRange(r.RelErr, 0, 1e-5));
        Assert.All(records, r => Assert.NotNull(r.Ratio));
        Assert.Equal(1, records[4].Ratio);
        Assert.Equal(ExitCodes.Usage, Run("bench", "lora", "--t", "1,x"));
        Assert.Contains("--t: 'x'", _error.ToString());
        Assert.Equal(ExitCodes.Usage, Run("bench", "lora", "--channels", "8", "--rank", "9"));
    }

    [Fact]
    public void Bench_factored_times_a_dense_layer_against_its_factors()
    {
        string json = Path.Combine(_folder, "factored.json");
        Assert.Equal(ExitCodes.Success,
            Run("bench", "factored", "--device", "cpu", "--t", "1,5", "--in", "24", "--out", "40", "--rank", "4", "--warmup", "1", "--reps", "3", "--json", json));
        var records = BenchReport.ReadJson(json);
        Assert.Equal(["linear_forward", "factored_forward", "factored_backward"], records.Take(3).Select(r => r.Op));
        Assert.Equal(6, records.Length);
        Assert.All(records, r => Assert.Equal([r.Shape[0], 24, 40, 4], r.Shape));
        Assert.All(records.Where(r => r.Op.EndsWith("forward", StringComparison.Ordinal)), r => Assert.InRange(r.RelErr, 0, 1e-5));
        Assert.Equal(1, records[3].Ratio);
        Assert.Equal(ExitCodes.Usage, Run("bench", "factored", "--in", "8", "--out", "16", "--rank", "9"));
        Assert.Contains("min(OC, C) = 8", _error.ToString());
    }

    [Fact]
    public void Bench_attention_reports_full_and_low_rank_with_reserved_memory()
    {
        string json = Path.Combine(_folder, "attention.json");
        Assert.Equal(ExitCodes.Success,
            Run("bench", "attention", "--device", "cpu", "--t", "16,32", "--channels", "16", "--heads", "2", "--k", "4", "--backward", "--warmup", "0",
                "--reps", "2", "--json", json));
        var records = BenchReport.ReadJson(json);
        Assert.Equal(["attention_full", "attention_low_rank", "attention_full", "attention_low_rank"], records.Select(r => r.Op));
        Assert.All(records, r => Assert.Equal("train", r.Trans));
        Assert.All(records, r => Assert.True(r.ReservedBytes > 0));
        Assert.True(records[3].ReservedBytes < records[2].ReservedBytes);
        Assert.Contains("\"reserved_bytes\"", File.ReadAllText(json));
        Assert.Equal(ExitCodes.Usage, Run("bench", "attention", "--channels", "10", "--heads", "3"));
    }

    [Fact]
    public void Info_names_the_generated_kernels_the_cpu_runs_or_why_not()
    {
        string json = Path.Combine(_folder, "info-kernels.json");
        Assert.Equal(ExitCodes.Success, Run("info", "--json", json));
        using var cpu = new LoraRuntime.Cpu.CpuBackend();
        using var report = System.Text.Json.JsonDocument.Parse(File.ReadAllText(json));
        var section = report.RootElement.GetProperty("cpu");
        Assert.Equal(cpu.IntegerKernel, section.GetProperty("integer_kernel").GetString());
        Assert.Equal(cpu.Bf16Kernel, section.GetProperty("bf16_kernel").GetString());
        Assert.Equal(LoraRuntime.Cpu.Quantized.Bf16Kernels.IsSupported, cpu.Bf16Kernel.StartsWith("generated AVX-512 BF16", StringComparison.Ordinal));
        Assert.Contains("BF16 kernel", _out.ToString());
    }

    [Fact]
    public void Info_reports_the_device_cpu_and_pool_and_writes_json()
    {
        string json = Path.Combine(_folder, "info.json");
        Assert.Equal(ExitCodes.Success, Run("info", "--json", json));
        string output = _out.ToString();
        Assert.Contains("chosen", output);
        Assert.Contains("GEMM kernel", output);
        Assert.Contains("bytes reserved", output);
        Assert.Contains("libcuda.so.1", output);
        string text = File.ReadAllText(json);
        Assert.Contains("\"device\"", text);
        Assert.Contains("\"gemm_kernel\"", text);
        Assert.Contains("\"tried\"", text);
    }

    [Fact]
    public void Info_with_device_cuda_reports_then_fails_saying_why_or_describes_the_backend()
    {
        int code = Run("info", "--device", "cuda");
        if (Devices.Probe.Available && Devices.CudaLibrariesProblem is null)
        {
            Assert.Equal(ExitCodes.Success, code);
            Assert.Contains("CUDA backend", _out.ToString());
            Assert.Contains("kernel compiler", _out.ToString());
            return;
        }
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("chosen", _out.ToString()); // the report comes first
        Assert.Contains("--device cuda", _error.ToString());
        Assert.Contains(Devices.Probe.Available ? "did not load" : "CUDA is unavailable", _error.ToString());
    }

    [Fact]
    public void Gemm_precision_other_than_fp32_needs_CUDA_and_bad_names_are_refused()
    {
        Assert.Equal(ExitCodes.Usage, Run("bench", "gemm", "--precision", "fp64", "--shapes", "4x4x4"));
        Assert.Contains("--precision: expected fp32, tf32 or bf16; got 'fp64'", _error.ToString());
        Assert.Equal(ExitCodes.Usage, Run("bench", "gemm", "--device", "cpu", "--precision", "tf32", "--shapes", "4x4x4"));
        Assert.Contains("only the CUDA backend has TF32 and bf16", _error.ToString());
        Assert.Equal(ExitCodes.Success, Run("bench", "gemm", "--device", "cpu", "--precision", "FP32", "--shapes", "4x4x4", "--reps", "1", "--warmup", "0"));
    }

    [Fact]
    public void The_root_help_lists_the_commands()
    {
        Assert.Equal(ExitCodes.Success, Run("--help"));
        string output = _out.ToString();
        Assert.Contains("info", output);
        Assert.Contains("bench", output);
    }
}

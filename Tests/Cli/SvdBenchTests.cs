using System.Text.Json;
using LoraRuntime.Cli;
using LoraRuntime.Cli.Bench;
using LoraRuntime.Cpu;
using Xunit;

namespace LoraRuntime.Tests.Cli;

public sealed class SvdBenchTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("lora-bench-svd-").FullName;
    private readonly CpuBackend _backend = new();
    private readonly StringWriter _out = new(), _error = new();

    public void Dispose()
    {
        _backend.Dispose();
        Directory.Delete(_folder, recursive: true);
    }

    private int Run(params string[] args) => LoraApp.Run(args, Terminal.ForWriters(_out, _error));

    [Fact]
    public void A_small_full_svd_is_timed_and_checked()
    {
        var record = SvdBench.Full(_backend, 24, warmup: 1, reps: 5);
        Assert.Equal("svd", record.Op);
        Assert.Equal("cpu", record.Device);
        Assert.Equal([24, 24], record.Shape);
        Assert.Equal(5, record.Reps);
        Assert.True(record.MedianMs > 0);
        Assert.InRange(record.RelErr, 0, 1e-6);
        Assert.Null(record.BestRelErr);
        Assert.Equal(0, _backend.Pool.Stats.BytesInUse);
    }

    [Fact]
    public void A_small_truncated_svd_reports_its_error_beside_the_best()
    {
        var record = SvdBench.Truncated(_backend, 300, 200, 8, warmup: 0, reps: 5);
        Assert.Equal("truncated_svd", record.Op);
        Assert.Equal([300, 200, 8], record.Shape);
        Assert.NotNull(record.BestRelErr);
        // The singular values are 0.8^i: the best rank-8 error is about 0.8^8 of the norm.
        Assert.InRange(record.BestRelErr!.Value, 0.1, 0.2);
        Assert.InRange(record.RelErr, 0, 1.05 * record.BestRelErr.Value);
    }

    [Fact]
    public void The_error_check_sees_a_wrong_factor()
    {
        float[] a = [3, 0, 0, 2]; // diag(3, 2)
        Assert.Equal(0, SvdBench.ReconstructionError(a, 2, 2, [1, 0, 0, 1], [3, 2], [1, 0, 0, 1], 2));
        Assert.True(SvdBench.ReconstructionError(a, 2, 2, [1, 0, 0, 1], [3, 1], [1, 0, 0, 1], 2) > 0.2);
    }

    [Fact]
    public void Bench_svd_prints_a_table_and_writes_json_with_the_agreed_fields()
    {
        string json = Path.Combine(_folder, "svd.json");
        Assert.Equal(ExitCodes.Success,
            Run("bench", "svd", "--device", "cpu", "--sizes", "16,40", "--truncated", "256x128x4", "--warmup", "0", "--reps", "5", "--json", json));
        string output = _out.ToString();
        Assert.Contains("truncated_svd", output);
        Assert.Contains("best rel err", output);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(json));
        Assert.Equal(3, doc.RootElement.GetArrayLength());
        var full = doc.RootElement[0];
        Assert.Equal(["op", "device", "shape", "median_ms", "reps", "rel_err"], full.EnumerateObject().Select(p => p.Name));
        Assert.Equal("svd", full.GetProperty("op").GetString());
        Assert.Equal([16, 16], full.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()));
        var truncated = doc.RootElement[2];
        Assert.Equal(["op", "device", "shape", "median_ms", "reps", "rel_err", "best_rel_err"], truncated.EnumerateObject().Select(p => p.Name));
        Assert.Equal([256, 128, 4], truncated.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(3, BenchReport.ReadSvdJson(json).Length);
    }

    [Theory]
    [InlineData("--sizes", "256,,512", "--sizes: expected sizes")]
    [InlineData("--sizes", "0", "--sizes: expected sizes")]
    [InlineData("--truncated", "4096x4096", "--truncated: bad shape")]
    [InlineData("--truncated", "64x64x65", "--truncated: the rank 65")]
    public void Bad_options_are_exit_code_2_naming_the_option(string option, string value, string message)
    {
        string[] sizes = option == "--sizes" ? [] : ["--sizes", "8"];
        Assert.Equal(ExitCodes.Usage, Run(["bench", "svd", "--device", "cpu", .. sizes, option, value, "--reps", "1"]));
        Assert.Contains(message, _error.ToString());
    }
}

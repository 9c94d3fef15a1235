using LoraRuntime.Cli;
using LoraRuntime.Cli.Bench;
using LoraRuntime.Cpu;
using LoraRuntime.Layers;
using Xunit;

namespace LoraRuntime.Tests.Serving;

/// <summary><c>lora bench serve</c> on a tiny model: every case runs, is checked against rows run alone, and is reported.</summary>
public sealed class ServeBenchTests
{
    [Fact]
    public void Every_case_runs_and_matches_rows_run_alone()
    {
        using var backend = new CpuBackend();
        var shape = new ServeBenchShape(new GptConfig(32, 2, 2, 16, 9), Batch: 6, Rank: 2, Context: 8, Distinct: [1, 3, 6], Targets: ["q", "v", "fc"]);
        var records = ServeBench.Run(backend, shape, warmup: 0, reps: 1);
        Assert.Equal(["decode_mixed", "decode_mixed", "decode_mixed", "decode_merged", "decode_loop"], records.Select(r => r.Op));
        Assert.Equal([1, 3, 6, 1, 6], records.Select(r => r.Shape[1]));
        Assert.All(records, r => Assert.InRange(r.RelErr, 0, 1e-5));
        Assert.All(records, r => Assert.True(r.MedianMs > 0 && r.Gflops > 0 && r.Reps == 1));
        Assert.Equal(1.0, records[0].Ratio);
    }

    [Theory]
    [InlineData("--adapters", "4,40")]
    [InlineData("--heads", "5")]
    [InlineData("--batch", "0")]
    public void Bad_options_are_usage_errors(string option, string value)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = LoraApp.Run(["bench", "serve", "--channels", "16", "--heads", "2", "--batch", "8", "--reps", "1", option, value], Terminal.ForWriters(output, error));
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains(option, error.ToString());
    }
}

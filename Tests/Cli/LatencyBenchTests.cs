using System.Text.Json;
using LoraRuntime.Cli;
using LoraRuntime.Cli.Bench;
using Xunit;

namespace LoraRuntime.Tests.Cli;

/// <summary>Runs alone: garbage collections are counted process-wide, and other tests allocate.</summary>
[CollectionDefinition(nameof(LatencyBenchCollection), DisableParallelization = true)]
public sealed class LatencyBenchCollection;

/// <summary><c>lora bench latency</c> on a tiny model: its JSON fields, ordered percentiles, and no collection or allocation while timing.</summary>
[Collection(nameof(LatencyBenchCollection))]
public sealed class LatencyBenchTests : IDisposable
{
    private readonly string _json = Path.Combine(Path.GetTempPath(), "lora-latency-" + Guid.NewGuid().ToString("N") + ".json");

    public void Dispose() => File.Delete(_json);

    [Fact]
    public void Times_forward_and_decode_base_and_with_an_adapter_without_collecting()
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = LoraApp.Run(["bench", "latency", "--models", "2x2x16x13x24", "--prompt-tokens", "8", "--context", "30", "--rank", "2",
            "--reps", "300", "--warmup", "5", "--warmup-seconds", "0", "--device", "cpu", "--json", _json], Terminal.ForWriters(output, error));
        Assert.True(code == ExitCodes.Success, error.ToString());
        var records = BenchReport.ReadLatencyJson(_json);
        Assert.Equal([("forward", "base"), ("forward", "lora"), ("decode", "base"), ("decode", "lora")], records.Select(r => (r.Op, r.Adapter)));
        foreach (var r in records)
        {
            Assert.Equal("2x2x16x13x24", r.Model);
            Assert.Equal([2, 2, 16, 13, 24], r.Shape);
            Assert.Equal(r.Op == "forward" ? 8 : 23, r.Tokens); // the context is cut to T − 1
            Assert.Equal(300, r.Reps);
            Assert.True(r.P50Ms > 0 && r.P50Ms <= r.P99Ms && r.P99Ms <= r.P999Ms && r.P999Ms <= r.MaxMs, $"{r.Op} {r.Adapter}: {r.P50Ms} {r.P99Ms} {r.P999Ms} {r.MaxMs}");
            Assert.Equal(r.P99Ms / r.P50Ms, r.P99OverP50, 9);
            Assert.Equal(0, r.AllocatedBytes);
            Assert.Equal((0, 0, 0), (r.Gen0Collections, r.Gen1Collections, r.Gen2Collections));
        }
        using var doc = JsonDocument.Parse(File.ReadAllBytes(_json));
        var first = doc.RootElement[0];
        foreach (var field in new[] { "model", "device", "op", "adapter", "shape", "tokens", "reps", "p50_ms", "p99_ms", "p999_ms", "max_ms", "p99_over_p50",
                     "gen0_collections", "gen1_collections", "gen2_collections", "allocated_bytes", "tokens_per_second", "pool_peak_bytes", "process_peak_bytes" })
            Assert.True(first.TryGetProperty(field, out _), $"field {field}");
        Assert.Contains("garbage collections during the timed calls: 0", output.ToString());
    }

    [Fact]
    public void A_bad_model_is_a_usage_error_naming_the_option()
    {
        var error = new StringWriter();
        Assert.Equal(ExitCodes.Usage, LoraApp.Run(["bench", "latency", "--models", "2x3x16x13x24"], Terminal.ForWriters(new StringWriter(), error)));
        Assert.Contains("--models", error.ToString());
    }
}

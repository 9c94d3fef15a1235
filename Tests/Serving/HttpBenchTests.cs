using System.Text.Json;
using LoraRuntime.Cli;
using Xunit;

namespace LoraRuntime.Tests.Serving;

/// <summary>
/// <c>lora bench http</c> at a small size: streamed requests over mixed adapters with a queue small enough for 429s and
/// clients that leave mid-stream end with no errors, no stream differing from its whole answer, every slot freed.
/// </summary>
public sealed class HttpBenchTests : IDisposable
{
    private readonly string _json = Path.Combine(Path.GetTempPath(), $"lora-bench-http-{Guid.NewGuid():N}.json");

    public void Dispose() => File.Delete(_json);

    [Fact]
    public void A_small_load_loses_and_crosses_nothing()
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = LoraApp.Run(["bench", "http", "--layers", "2", "--channels", "32", "--heads", "2", "--vocab", "48", "--context", "96", "--clients", "6",
            "--requests", "4", "--max-tokens", "20", "--slots", "3", "--max-queue", "1", "--disconnect-every", "4", "--adapters", "2", "--rank", "2",
            "--device", "cpu", "--json", _json], Terminal.ForWriters(output, error));
        Assert.True(code == 0, error.ToString() + output);
        using var json = JsonDocument.Parse(File.ReadAllText(_json));
        var r = json.RootElement[0];
        Assert.Equal(24, r.GetProperty("requests").GetInt32());
        Assert.Equal(6, r.GetProperty("disconnected").GetInt32());
        Assert.Equal(18, r.GetProperty("completed").GetInt32());
        Assert.Equal(0, r.GetProperty("errors").GetInt32());
        Assert.Equal(0, r.GetProperty("mismatches").GetInt32());
        Assert.Equal(0, r.GetProperty("active_after").GetInt32());
        Assert.True(r.GetProperty("tokens").GetInt64() >= 18 * 20 + 6 * 10);
        Assert.True(r.GetProperty("ttft_p99_ms").GetDouble() >= r.GetProperty("ttft_p50_ms").GetDouble());
    }
}

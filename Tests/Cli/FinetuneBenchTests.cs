using LoraRuntime.Cli;
using LoraRuntime.Cli.Bench;
using LoraRuntime.Layers;
using Xunit;

namespace LoraRuntime.Tests.Cli;

/// <summary><c>lora bench finetune</c> on a tiny model, and the Llama-family presets' shapes against their published configurations.</summary>
public sealed class FinetuneBenchTests : IDisposable
{
    private readonly string _json = Path.Combine(Path.GetTempPath(), "lora-finetune-" + Guid.NewGuid().ToString("N") + ".json");

    public void Dispose() => File.Delete(_json);

    [Fact]
    public void Times_a_lora_step_and_reports_tokens_a_second()
    {
        var error = new StringWriter();
        int code = LoraApp.Run(["bench", "finetune", "--models", "2x2x16x13x24", "--batch", "2", "--time", "8", "--rank", "2", "--targets", "q,v,fc",
            "--reps", "3", "--warmup", "1", "--device", "cpu", "--json", _json], Terminal.ForWriters(new StringWriter(), error));
        Assert.True(code == ExitCodes.Success, error.ToString());
        var record = Assert.Single(BenchReport.ReadJson(_json));
        Assert.Equal("finetune_step", record.Op);
        Assert.Equal([2, 8, 2], record.Shape);
        Assert.Equal(3, record.Reps);
        Assert.True(record.MedianMs > 0 && record.Gflops > 0);
        Assert.Equal(16 / (record.MedianMs / 1000), record.Ratio!.Value, 6);
        Assert.True(record.ReservedBytes > 0);
        Assert.Equal(ExitCodes.Usage, LoraApp.Run(["bench", "finetune", "--models", "2x2x16x13x24", "--time", "30"], Terminal.ForWriters(new StringWriter(), error)));
        Assert.Contains("--time", error.ToString());
    }

    [Theory]
    [InlineData("smollm2-135m", 30, 576, 9, 3, 1536, 49152, 134_515_008L)]
    [InlineData("qwen2.5-0.5b", 24, 896, 14, 2, 4864, 151936, 494_032_768L)]
    [InlineData("llama3.2-1b", 16, 2048, 32, 8, 8192, 128256, 1_235_814_400L)]
    public void The_presets_have_the_published_shapes_and_parameter_counts(string name, int layers, int channels, int heads, int kvHeads, int hidden,
        int vocabulary, long parameters)
    {
        var config = LatencyModel.Parse(name, 64).Config;
        Assert.Equal((layers, channels, heads, kvHeads, hidden, vocabulary), (config.Layers, config.Channels, config.Heads, config.KvHeads, config.Hidden, config.Vocabulary));
        // The published parameter counts (tied heads), from the shapes alone: embeddings, norms, q/k/v/o (+ q/k/v biases), the gated MLP.
        int hs = config.HeadDim, q = heads * hs, kv = kvHeads * hs;
        long perLayer = 2L * channels + (long)channels * (q + 2 * kv) + (config.QkvBias ? q + 2 * kv : 0) + (long)q * channels + 3L * channels * hidden;
        Assert.Equal(parameters, (long)vocabulary * channels + channels + layers * perLayer);
    }
}

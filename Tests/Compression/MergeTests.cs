using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Tests.Layers;
using Xunit;
using Reference = LoraRuntime.Tests.Support.Reference;

namespace LoraRuntime.Tests.Compression;

/// <summary><c>lora merge</c>: the merged model's weights are W + scale·s·B·A in float64 and its outputs are the adapter's.</summary>
public sealed class MergeTests : IDisposable
{
    private readonly CompressionFixture _f = new();

    public void Dispose() => _f.Dispose();

    private static LoraConfig Config(bool dora) => new()
    {
        TargetModules = ["q", "v", "fc"],
        Defaults = new LoraOptions { Rank = 2, Alpha = 6, Init = LoraInit.Random, Seed = 4, UseDora = dora },
        RankPattern = new Dictionary<string, int> { ["fc"] = 3 },
    };

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_merged_model_equals_the_unmerged_adapter(bool dora)
    {
        // DoRA adapts whole layers only: it targets qkv and fc.
        var config = dora ? Config(true) with { TargetModules = ["qkv", "fc"] } : Config(false);
        float[] expected;
        Dictionary<string, double[]> merged = [];
        using (var model = _f.Model())
        using (var lora = new LoraModel(model))
        {
            _f.Save(model, "base");
            var adapter = lora.AddAdapter("a", config);
            if (dora)
                foreach (var w in adapter.Modules) // a magnitude away from ‖W + s·BA‖, so that the rescaling matters
                    w.Magnitude!.Value.CopyFrom(w.Magnitude.Value.ToArray().Select((v, i) => v * (1 + 0.1f * (i % 3))).ToArray());
            PeftAdapterFiles.Save(adapter, config, _f.PathOf("adapter"), "base");
            // The adapter at scale 0.5 is the same adapter with B halved.
            foreach (var w in adapter.Modules) _f.Backend.Scale(w.B.Value, w.B.Value, 0.5f);
            foreach (var w in adapter.Modules) w.Dora?.Refresh();
            expected = _f.Logits(model);
            if (!dora)
                foreach (var w in adapter.Modules)
                {
                    string name = w.Module.Base.Weight.Name;
                    merged[name] = LoraReference.Merged(w, merged.GetValueOrDefault(name) ?? Reference.ToDouble(w.Module.Base.Weight.Value.ToArray()));
                }
        }
        Assert.Equal(0, _f.Run("merge", "--base", _f.PathOf("base"), "--adapter", _f.PathOf("adapter") + ":0.5", "--out", _f.PathOf("merged")));
        var (result, _, _) = GptFiles.Load(_f.Backend, _f.PathOf("merged"), maxBatch: 2);
        using (result)
        {
            foreach (var (name, weight) in merged)
                Assert.True(Reference.RelativeError(result.Parameters[name].Value.ToArray(), weight) <= 1e-6, $"{name} differs from W + 0.5·s·B·A");
            Assert.True(Reference.RelativeError(_f.Logits(result), Reference.ToDouble(expected)) <= 1e-5);
        }
    }

    [Fact]
    public void An_adapter_for_another_model_is_refused_and_nothing_is_written()
    {
        using (var model = _f.Model()) _f.Save(model, "base");
        using (var wide = _f.Model(config: CompressionFixture.Tiny with { Channels = 8 }))
        using (var lora = new LoraModel(wide))
            PeftAdapterFiles.Save(lora.AddAdapter("a", Config(false)), Config(false), _f.PathOf("adapter"), "wide");
        Assert.Equal(2, _f.Run("merge", "--base", _f.PathOf("base"), "--adapter", _f.PathOf("adapter"), "--out", _f.PathOf("merged")));
        Assert.Contains("does not fit the model", _f.Error.ToString());
        Assert.Contains("blocks.0.attn.q.lora_A.weight", _f.Error.ToString());
        Assert.False(Directory.Exists(_f.PathOf("merged")));
        Assert.Equal(2, _f.Run("merge", "--base", _f.PathOf("nothing"), "--adapter", _f.PathOf("adapter"), "--out", _f.PathOf("merged")));
        Assert.False(Directory.Exists(_f.PathOf("merged")));
    }
}

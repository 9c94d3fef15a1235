using System.Text.Json;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using Xunit;
using Reference = LoraRuntime.Tests.Support.Reference;

namespace LoraRuntime.Tests.Compression;

/// <summary><c>lora extract</c>: a known rank-R delta comes back exactly as s·B·A, and the adapter reproduces the tuned model.</summary>
public sealed class ExtractTests : IDisposable
{
    private readonly CompressionFixture _f = new();

    public void Dispose() => _f.Dispose();

    /// <summary>Base and tuned models on disk; the tuned one adds known rank-2 deltas to q (a slice of qkv) and fc.</summary>
    private (double[] DeltaQ, double[] DeltaFc, float[] TunedLogits) Models()
    {
        double[] dq = CompressionFixture.LowRank(16, 16, 2, seed: 21), dfc = CompressionFixture.LowRank(64, 16, 2, seed: 23);
        using var model = _f.Model();
        _f.Save(model, "base");
        var qkv = model.Parameters["blocks.0.attn.qkv.weight"];
        var w = qkv.Value.ToArray();
        for (int i = 0; i < dq.Length; i++) w[i] += (float)dq[i]; // q is rows [0, C) of qkv
        qkv.Value.CopyFrom(w);
        var fc = model.Parameters["blocks.0.mlp.fc.weight"];
        fc.Value.CopyFrom(fc.Value.ToArray().Select((v, i) => v + (float)dfc[i]).ToArray());
        _f.Save(model, "tuned");
        return (dq, dfc, _f.Logits(model));
    }

    [Fact]
    public void A_known_rank_r_delta_is_recovered_and_the_adapter_reproduces_the_tuned_model()
    {
        var (dq, dfc, tunedLogits) = Models();
        string json = _f.PathOf("extract.json");
        Assert.Equal(0, _f.Run("extract", "--base", _f.PathOf("base"), "--tuned", _f.PathOf("tuned"), "--rank", "2", "--targets", "q,fc",
            "--out", _f.PathOf("adapter"), "--json", json));
        Assert.DoesNotContain("not in the adapter", _f.Out.ToString());
        var config = PeftAdapterFiles.ReadConfig(_f.PathOf("adapter"));
        Assert.Equal((2, 2f), (config.Defaults.Rank, config.Defaults.Alpha)); // s = α/R = 1
        using (var doc = JsonDocument.Parse(File.ReadAllBytes(json)))
            foreach (var module in doc.RootElement.GetProperty("modules").EnumerateArray())
            {
                Assert.True(module.GetProperty("relative_error").GetDouble() <= 1e-5);
                Assert.InRange(module.GetProperty("kept_energy").GetDouble(), 1 - 1e-5, 1);
            }
        var (model, _, _) = GptFiles.Load(_f.Backend, _f.PathOf("base"), maxBatch: 2);
        using (model)
        using (var lora = new LoraModel(model))
        {
            var adapter = PeftAdapterFiles.Load(lora, "x", _f.PathOf("adapter"));
            foreach (var w in adapter.Modules)
            {
                double[] expected = w.Module.Path.EndsWith(".q", StringComparison.Ordinal) ? dq : dfc;
                float[] a = w.A.Value.ToArray(), b = w.B.Value.ToArray();
                int n = w.Module.InFeatures, r = w.Rank;
                var product = new float[w.Module.OutFeatures * n];
                for (int i = 0; i < w.Module.OutFeatures; i++)
                    for (int j = 0; j < n; j++)
                    {
                        double s = 0;
                        for (int k = 0; k < r; k++) s += (double)b[i * r + k] * a[k * n + j];
                        product[i * n + j] = (float)(w.Scale * s);
                    }
                Assert.True(Reference.RelativeError(product, expected) <= 1e-5, $"{w.Module.Path}: s·B·A differs from ΔW");
            }
            Assert.True(Reference.RelativeError(_f.Logits(model), Reference.ToDouble(tunedLogits)) <= 1e-5);
        }
    }

    [Fact]
    public void Differences_the_adapter_cannot_carry_are_named()
    {
        Models();
        // Targeting fc alone leaves q's delta (in qkv) out of the adapter.
        Assert.Equal(0, _f.Run("extract", "--base", _f.PathOf("base"), "--tuned", _f.PathOf("tuned"), "--rank", "2", "--targets", "fc", "--out", _f.PathOf("adapter")));
        string text = System.Text.RegularExpressions.Regex.Replace(_f.Out.ToString(), @"\s+", " "); // the plain console wraps at 80 columns
        Assert.Contains("1 parameters outside the targeted layers also differ and are not in the adapter: blocks.0.attn.qkv.weight", text);
    }

    [Fact]
    public void Mismatched_models_or_a_rank_above_min_are_refused_and_nothing_is_written()
    {
        Models();
        using (var other = _f.Model(config: CompressionFixture.Tiny with { Channels = 8 })) _f.Save(other, "other");
        string outDir = _f.PathOf("never");
        Assert.Equal(2, _f.Run("extract", "--base", _f.PathOf("base"), "--tuned", _f.PathOf("other"), "--rank", "2", "--out", outDir));
        Assert.Contains("n_embd is 8, but the base model's is 16", _f.Error.ToString());
        Assert.False(Directory.Exists(outDir));
        Assert.Equal(2, _f.Run("extract", "--base", _f.PathOf("base"), "--tuned", _f.PathOf("tuned"), "--rank", "17", "--targets", "q", "--out", outDir));
        Assert.Contains("min(in, out)", _f.Error.ToString());
        Assert.False(Directory.Exists(outDir));
    }
}

using LoraRuntime.Layers;
using Xunit;

namespace LoraRuntime.Tests.Layers;

/// <summary>Linformer attention against the float64 reference, and its memory growing as O(T·K).</summary>
public sealed class LowRankAttentionTests
{
    private const int Channels = 8, Heads = 2, MaxTime = 6, Projected = 3;

    [Theory]
    [InlineData(false, false, 2, 6)]
    [InlineData(true, false, 2, 4)] // T below the maximum: the first T columns of E and F
    [InlineData(false, true, 1, 5)]
    [InlineData(true, true, 2, 6)]
    public void Forward_and_backward_match_the_reference(bool shareHeads, bool shareKeyValue, int batch, int time)
    {
        using var f = new LayerFixture(maxBatch: 2, maxTime: MaxTime);
        var options = new LowRankAttentionOptions { ProjectedLength = Projected, ShareHeads = shareHeads, ShareKeyValue = shareKeyValue };
        var attention = new LowRankAttention(f.Parameters, f.Activations, "attn", Channels, Heads, options);
        f.Reserve(trained: true);
        Assert.Equal(new Shape(shareHeads ? 1 : Heads, Projected, MaxTime), attention.E.Shape);
        Assert.Equal(shareKeyValue, ReferenceEquals(attention.E, attention.F));
        GradientCheck.Run(f.Backend, [f.Parameters],
            (m, x) => m.LowRankAttention("attn", x, batch, time, Channels, Heads, Projected, MaxTime, shareHeads, shareKeyValue),
            p => new ReferenceModel(p), attention.Forward, (dx, dy, x) => attention.Backward(dx, dy, x),
            [batch, time, Channels], [batch, time, Channels], 50, $"LowRankAttention (share heads {shareHeads}, share K/V {shareKeyValue}, T = {time})");
    }

    [Fact]
    public void Reserved_memory_grows_linearly_in_T_where_full_attention_grows_quadratically()
    {
        long Bytes(int maxTime, bool lowRank)
        {
            using var f = new LayerFixture(maxBatch: 1, maxTime: maxTime, training: false);
            if (lowRank) _ = new LowRankAttention(f.Parameters, f.Activations, "attn", 64, 4, new LowRankAttentionOptions { ProjectedLength = 32 });
            else _ = new CausalSelfAttention(f.Parameters, f.Activations, "attn", 64, 4);
            return f.Activations.Bytes;
        }
        foreach (int t in new[] { 512, 1024 })
        {
            double lowRankRatio = (double)Bytes(2 * t, true) / Bytes(t, true);
            double fullRatio = (double)Bytes(2 * t, false) / Bytes(t, false);
            Assert.InRange(lowRankRatio, 1.9, 2.1);
            Assert.InRange(fullRatio, 3.0, 4.1);
        }
    }

    [Fact]
    public void Projections_start_uniform_within_one_over_sqrt_K()
    {
        using var f = new LayerFixture(maxBatch: 1, maxTime: 64);
        var attention = new LowRankAttention(f.Parameters, f.Activations, "attn", 16, 2, new LowRankAttentionOptions { ProjectedLength = 16 });
        f.Reserve(trained: false);
        attention.InitializeProjections(3);
        foreach (var p in new[] { attention.E, attention.F })
        {
            var values = p.Value.ToArray();
            Assert.All(values, v => Assert.InRange(Math.Abs(v), 0, 0.25));
            Assert.InRange(values.Max(Math.Abs), 0.24, 0.25);
        }
        Assert.NotEqual(attention.E.Value.ToArray(), attention.F.Value.ToArray());
    }
}

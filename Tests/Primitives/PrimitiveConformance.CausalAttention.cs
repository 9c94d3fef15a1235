using Xunit;

namespace LoraRuntime.Tests.Primitives;

// Causal self-attention, forward and backward, against float64: the backend's fused kernels where it has them, and its
// composed default (GEMMs around a softmax) where it can be asked for it.
public abstract partial class PrimitiveConformance
{
    /// <summary>
    /// Makes <see cref="Backend"/> run attention through the composed default of <see cref="LoraRuntime.Backend"/> instead
    /// of its fused kernels; a backend with only one path leaves it as it is.
    /// </summary>
    protected virtual void UseComposedAttention() { }

    /// <summary>
    /// (B, NH, KVH, T, HS): T below, at and past the four-row and sixteen-column blocks, HS 16 to 64, a head size no
    /// kernel takes, and grouped- and multi-query attention (KVH &lt; NH).
    /// </summary>
    public static TheoryData<int, int, int, int, int> CausalAttentionShapes => new()
    {
        { 1, 1, 1, 1, 16 }, { 1, 2, 2, 3, 16 }, { 3, 1, 1, 4, 32 }, { 2, 1, 1, 5, 32 }, { 2, 2, 2, 17, 32 }, { 12, 4, 4, 64, 32 }, { 1, 2, 2, 33, 64 },
        { 1, 1, 1, 100, 48 }, { 2, 1, 1, 9, 12 }, { 2, 4, 2, 7, 16 }, { 1, 6, 1, 9, 8 }, { 3, 6, 3, 5, 32 },
    };

    /// <summary>Each shape on the fused and on the composed path.</summary>
    public static TheoryData<int, int, int, int, int, bool> CausalAttentionCases
    {
        get
        {
            var cases = new TheoryData<int, int, int, int, int, bool>();
            foreach (var row in CausalAttentionShapes)
            {
                var (b, nh, kvh, t, hs) = row.Data;
                cases.Add(b, nh, kvh, t, hs, false);
                cases.Add(b, nh, kvh, t, hs, true);
            }
            return cases;
        }
    }

    [Theory]
    [MemberData(nameof(CausalAttentionCases))]
    public void CausalSelfAttention_forward_and_backward_match_float64(int batch, int heads, int kvHeads, int time, int headSize, bool composed)
    {
        if (composed) UseComposedAttention();
        var rng = new Random(batch * 10000 + heads * 1000 + kvHeads * 100 + time * 10 + headSize);
        int group = heads / kvHeads, q = heads * headSize, kv = kvHeads * headSize, width = q + 2 * kv, rows = batch * time;
        int square = batch * heads * time * time;
        float[] qkv = Uniform(rng, rows * width, -2, 2), dy = Uniform(rng, rows * q);
        float scale = 1 / MathF.Sqrt(headSize);
        // The reference per query head h, on heads cut out of the packed rows: k and v of head h / group.
        int n = batch * heads * time * headSize;
        float[] qh = new float[n], kh = new float[n], vh = new float[n], dyHeads = new float[n];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int t = 0; t < time; t++)
                    for (int d = 0; d < headSize; d++)
                    {
                        int head = ((b * heads + h) * time + t) * headSize + d, row = (b * time + t) * width;
                        int j = h / group;
                        (qh[head], kh[head], vh[head]) = (qkv[row + h * headSize + d], qkv[row + q + j * headSize + d], qkv[row + q + kv + j * headSize + d]);
                        dyHeads[head] = dy[(b * time + t) * q + h * headSize + d];
                    }
        var (yHeads, expectedAtt, dqHeads, dkHeads, dvHeads) = AttentionReference(qh, kh, vh, dyHeads, batch * heads, time, headSize, scale);
        double[] expectedY = new double[rows * q], expectedDqkv = new double[rows * width];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int t = 0; t < time; t++)
                    for (int d = 0; d < headSize; d++)
                    {
                        int head = ((b * heads + h) * time + t) * headSize + d, row = (b * time + t) * width, j = h / group;
                        expectedY[(b * time + t) * q + h * headSize + d] = yHeads[head];
                        expectedDqkv[row + h * headSize + d] = dqHeads[head];
                        // A key/value head's gradient sums over the query heads of its group.
                        expectedDqkv[row + q + j * headSize + d] += dkHeads[head];
                        expectedDqkv[row + q + kv + j * headSize + d] += dvHeads[head];
                    }

        var y = Upload(Enumerable.Repeat(5f, rows * q).ToArray(), batch, time, q);
        var att = Upload(Enumerable.Repeat(5f, square).ToArray(), batch, heads, time, time);
        var packed = Upload(qkv, batch, time, width);
        Tensor HeadsOf(int count) => Upload(Enumerable.Repeat(3f, batch * count * time * headSize).ToArray(), batch, count, time, headSize);
        var saved = new AttentionScratch(HeadsOf(heads), HeadsOf(kvHeads), HeadsOf(kvHeads), HeadsOf(heads));
        Backend.CausalSelfAttentionForward(y, att, packed, heads, kvHeads, scale, saved);
        string what = $"[B {batch}, NH {heads}, KVH {kvHeads}, T {time}, HS {headSize}{(composed ? ", composed" : "")}]";
        Expect.Close(att.ToArray(), expectedAtt, 2e-6, 1e-7, "att " + what);
        Expect.Close(y.ToArray(), expectedY, 1e-5, 1e-6, "y " + what);

        var dQkv = Upload(Enumerable.Repeat(9f, rows * width).ToArray(), batch, time, width); // overwritten whole
        var dScores = Upload(new float[square], batch, heads, time, time);
        var gradients = new AttentionGradientScratch(HeadsOf(heads), HeadsOf(kvHeads), HeadsOf(kvHeads), HeadsOf(heads),
            Upload(Enumerable.Repeat(3f, square).ToArray(), batch, heads, time, time));
        Backend.CausalSelfAttentionBackward(dQkv, dScores, Upload(dy, batch, time, q), packed, att, heads, kvHeads, scale, saved, gradients);
        Expect.Close(dQkv.ToArray(), expectedDqkv, 1e-5, 1e-6, "dqkv " + what);
    }

    [Fact]
    public void CausalSelfAttention_refuses_mismatched_shapes_and_shared_memory()
    {
        var qkv = Upload(new float[2 * 4 * 96], 2, 4, 96); // C = 32, NH = 2
        var y = Upload(new float[2 * 4 * 32], 2, 4, 32);
        var att = Upload(new float[2 * 2 * 4 * 4], 2, 2, 4, 4);
        var dQkv = Upload(new float[2 * 4 * 96], 2, 4, 96);
        var dScores = Upload(new float[2 * 2 * 4 * 4], 2, 2, 4, 4);
        Tensor Heads(int hs = 16) => Upload(new float[2 * 2 * 4 * hs], 2, 2, 4, hs);
        var s = new AttentionScratch(Heads(), Heads(), Heads(), Heads());
        var g = new AttentionGradientScratch(Heads(), Heads(), Heads(), Heads(), Upload(new float[2 * 2 * 4 * 4], 2, 2, 4, 4));
        string Message(Action call) => Assert.ThrowsAny<ArgumentException>(call).Message;
        Assert.Contains("qkv", Message(() => Backend.CausalSelfAttentionForward(y, att, qkv, 3, 3, 1f, s)));
        Assert.Contains("qkv", Message(() => Backend.CausalSelfAttentionForward(y, att, Upload(new float[2 * 4 * 95], 2, 4, 95), 2, 2, 1f, s)));
        Assert.Contains("att", Message(() => Backend.CausalSelfAttentionForward(y, Upload(new float[2 * 2 * 4 * 5], 2, 2, 4, 5), qkv, 2, 2, 1f, s)));
        Assert.Contains("output", Message(() => Backend.CausalSelfAttentionForward(Upload(new float[2 * 4 * 33], 2, 4, 33), att, qkv, 2, 2, 1f, s)));
        var inside = Track(qkv.View(0, new Shape(2, 4, 32)));
        Assert.Contains("must not share memory", Message(() => Backend.CausalSelfAttentionForward(inside, att, qkv, 2, 2, 1f, s)));
        Assert.Contains("scale", Message(() => Backend.CausalSelfAttentionForward(y, att, qkv, 2, 2, float.NaN, s)));
        Assert.Contains("dScores", Message(() => Backend.CausalSelfAttentionBackward(dQkv, Upload(new float[2 * 2 * 4 * 5], 2, 2, 4, 5), y, qkv, att, 2, 2, 1f, s, g)));
        Assert.Contains("must not share memory", Message(() => Backend.CausalSelfAttentionBackward(qkv, dScores, y, qkv, att, 2, 2, 1f, s, g)));
        Assert.Contains("dy", Message(() => Backend.CausalSelfAttentionBackward(dQkv, dScores, qkv, qkv, att, 2, 2, 1f, s, g)));
        Assert.Contains("qkv", Message(() => Backend.CausalSelfAttentionForward(y, att, Foreign(2, 4, 96), 2, 2, 1f, s)));
        Assert.Contains("scratch.Keys", Message(() => Backend.CausalSelfAttentionForward(y, att, qkv, 2, 2, 1f, s with { Keys = Heads(8) })));
        Assert.Contains("kvHeads", Message(() => Backend.CausalSelfAttentionForward(y, att, qkv, 2, 3, 1f, s)));
        Assert.Contains("gradients.DAtt", Message(() => Backend.CausalSelfAttentionBackward(dQkv, dScores, y, qkv, att, 2, 2, 1f, s, g with { DAtt = dScores.View(0, new Shape(2, 2, 4, 2)) })));
    }

    /// <summary>Causal attention and its gradients in float64, per head: s = scale·q·kᵀ (j ≤ i), p = softmax(s), y = p·v.</summary>
    private static (double[] Y, double[] Att, double[] Dq, double[] Dk, double[] Dv) AttentionReference(float[] q, float[] k, float[] v, float[] dy,
        int heads, int time, int hs, double scale)
    {
        int n = heads * time * hs;
        double[] y = new double[n], att = new double[heads * time * time], dq = new double[n], dk = new double[n], dv = new double[n];
        for (int h = 0; h < heads; h++)
        {
            int o = h * time * hs, a = h * time * time;
            for (int i = 0; i < time; i++)
            {
                var s = new double[i + 1];
                for (int j = 0; j <= i; j++)
                {
                    double dot = 0;
                    for (int d = 0; d < hs; d++) dot += (double)q[o + i * hs + d] * k[o + j * hs + d];
                    s[j] = scale * dot;
                }
                double max = s.Max(), sum = s.Sum(x => Math.Exp(x - max));
                for (int j = 0; j <= i; j++) att[a + i * time + j] = Math.Exp(s[j] - max) / sum;
                for (int d = 0; d < hs; d++)
                {
                    double acc = 0;
                    for (int j = 0; j <= i; j++) acc += att[a + i * time + j] * v[o + j * hs + d];
                    y[o + i * hs + d] = acc;
                }
                // dP[i, j] = dy_i · v_j; dS = p ⊙ (dP − Σ p ⊙ dP); dq_i += scale·dS·k_j; dk_j += scale·dS·q_i; dv_j += p·dy_i.
                var dp = new double[i + 1];
                for (int j = 0; j <= i; j++)
                    for (int d = 0; d < hs; d++) dp[j] += (double)dy[o + i * hs + d] * v[o + j * hs + d];
                double weighted = 0;
                for (int j = 0; j <= i; j++) weighted += att[a + i * time + j] * dp[j];
                for (int j = 0; j <= i; j++)
                {
                    double p = att[a + i * time + j], ds = p * (dp[j] - weighted);
                    for (int d = 0; d < hs; d++)
                    {
                        dq[o + i * hs + d] += scale * ds * k[o + j * hs + d];
                        dk[o + j * hs + d] += scale * ds * q[o + i * hs + d];
                        dv[o + j * hs + d] += p * dy[o + i * hs + d];
                    }
                }
            }
        }
        return (y, att, dq, dk, dv);
    }
}

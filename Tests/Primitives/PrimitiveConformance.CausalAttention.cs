using Xunit;

namespace LoraRuntime.Tests.Primitives;

// Fused causal self-attention, forward and backward, against float64; a backend without the kernel for a shape says
// so (false) and leaves every output alone.
public abstract partial class PrimitiveConformance
{
    /// <summary>(batch·heads, T, HS): T below, at and past the four-row and sixteen-column blocks, HS 16 to 64, and a head size no kernel takes.</summary>
    public static TheoryData<int, int, int> CausalAttentionShapes => new()
    {
        { 1, 1, 16 }, { 2, 3, 16 }, { 3, 4, 32 }, { 2, 5, 32 }, { 4, 17, 32 }, { 48, 64, 32 }, { 2, 33, 64 }, { 1, 100, 48 }, { 2, 9, 12 },
    };

    [Theory]
    [MemberData(nameof(CausalAttentionShapes))]
    public void CausalAttention_forward_and_backward_match_float64(int heads, int time, int headSize)
    {
        var rng = new Random(heads * 1000 + time * 10 + headSize);
        int n = heads * time * headSize, square = heads * time * time;
        float[] q = Uniform(rng, n, -2, 2), k = Uniform(rng, n, -2, 2), v = Uniform(rng, n, -2, 2), dy = Uniform(rng, n);
        float scale = 1 / MathF.Sqrt(headSize);
        var (expectedY, expectedAtt, expectedDq, expectedDk, expectedDv) = AttentionReference(q, k, v, dy, heads, time, headSize, scale);

        var y = Upload(Enumerable.Repeat(5f, n).ToArray(), heads, time, headSize);
        var att = Upload(Enumerable.Repeat(5f, square).ToArray(), heads, time, time);
        Tensor tq = Upload(q, heads, time, headSize), tk = Upload(k, heads, time, headSize), tv = Upload(v, heads, time, headSize);
        bool fused = Backend.TryCausalAttentionForward(y, att, tq, tk, tv, scale);
        if (!fused)
        {
            Assert.All(y.ToArray(), x => Assert.Equal(5f, x));
            Assert.All(att.ToArray(), x => Assert.Equal(5f, x));
            return;
        }
        string what = $"[{heads}, {time}, {headSize}]";
        Expect.Close(att.ToArray(), expectedAtt, 2e-6, 1e-7, "att " + what);
        Expect.Close(y.ToArray(), expectedY, 1e-5, 1e-6, "y " + what);

        var dq = Upload(new float[n], heads, time, headSize);
        var dk = Upload(new float[n], heads, time, headSize);
        var dv = Upload(new float[n], heads, time, headSize);
        var dScores = Upload(new float[square], heads, time, time);
        Assert.True(Backend.TryCausalAttentionBackward(dq, dk, dv, dScores, Upload(dy, heads, time, headSize), tq, tk, tv, att, scale));
        Expect.Close(dv.ToArray(), expectedDv, 1e-5, 1e-6, "dv " + what);
        Expect.Close(dq.ToArray(), expectedDq, 1e-5, 1e-6, "dq " + what);
        Expect.Close(dk.ToArray(), expectedDk, 1e-5, 1e-6, "dk " + what);
    }

    [Fact]
    public void CausalAttention_refuses_mismatched_shapes_and_shared_memory()
    {
        var q = Upload(new float[2 * 4 * 16], 2, 4, 16);
        var k = Upload(new float[2 * 4 * 16], 2, 4, 16);
        var v = Upload(new float[2 * 4 * 16], 2, 4, 16);
        var y = Upload(new float[2 * 4 * 16], 2, 4, 16);
        var att = Upload(new float[2 * 4 * 4], 2, 4, 4);
        var wrong = Upload(new float[2 * 4 * 16], 2, 16, 4);
        var badAtt = Upload(new float[2 * 4 * 5], 2, 4, 5);
        string Message(Action call) => Assert.ThrowsAny<ArgumentException>(call).Message;
        Assert.Contains("k", Message(() => Backend.TryCausalAttentionForward(y, att, q, wrong, v, 1f)));
        Assert.Contains("att", Message(() => Backend.TryCausalAttentionForward(y, badAtt, q, k, v, 1f)));
        Assert.Contains("must not share memory", Message(() => Backend.TryCausalAttentionForward(q, att, q, k, v, 1f)));
        Assert.Contains("scale", Message(() => Backend.TryCausalAttentionForward(y, att, q, k, v, float.PositiveInfinity)));
        Assert.Contains("dScores", Message(() => Backend.TryCausalAttentionBackward(y, k, v, badAtt, q, q, k, v, att, 1f)));
        Assert.Contains("must not share memory", Message(() => Backend.TryCausalAttentionBackward(y, y, v, att, q, q, k, v, att, 1f)));
        Assert.Contains("q", Message(() => Backend.TryCausalAttentionForward(y, att, Foreign(2, 4, 16), k, v, 1f)));
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

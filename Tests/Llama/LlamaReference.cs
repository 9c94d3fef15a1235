namespace LoraRuntime.Tests.Llama;

/// <summary>The architecture of a Llama-family checkpoint as its config.json states it (Hugging Face's names).</summary>
internal sealed record LlamaShape(int Vocabulary, int Hidden, int Intermediate, int Layers, int Heads, int KvHeads, int HeadDim, double RmsEps,
    bool QkvBias, bool OutputBias, bool MlpBias, bool Tied, double RopeTheta, double PartialRotary = 1, string RopeType = "default",
    double Factor = 1, int OriginalMax = 2048, double LowFreq = 1, double HighFreq = 4, double BetaFast = 32, double BetaSlow = 1,
    double? AttentionFactor = null, bool QkNorm = false);

/// <summary>
/// A Llama-family decoder in float64 with plain loops, written from the published architecture (Hugging Face's
/// modeling_llama / modeling_qwen2 and modeling_rope_utils), over weights keyed by Hugging Face's tensor names:
/// embed_tokens → per layer x + o_proj(attn(input_layernorm(x))), then + down_proj(silu(gate_proj h) · up_proj h) of
/// post_attention_layernorm → norm → lm_head (or embed_tokens when tied). Attention: q, k (RMS-normed per head in
/// Qwen3) rotated by rotate_half at
/// their positions (the first partial·head_dim dimensions), k and v repeated to every query head of their group,
/// softmax(q kᵀ/√head_dim) under the causal mask.
/// </summary>
internal sealed class LlamaReference(LlamaShape shape, Dictionary<string, double[]> weights)
{
    /// <summary>logits [T, V] of one sequence.</summary>
    public double[] Logits(int[] tokens)
    {
        int t = tokens.Length, c = shape.Hidden, v = shape.Vocabulary;
        var embed = weights["model.embed_tokens.weight"];
        var x = new double[t * c];
        for (int i = 0; i < t; i++) Array.Copy(embed, (long)tokens[i] * c, x, (long)i * c, c);
        for (int l = 0; l < shape.Layers; l++)
        {
            string p = $"model.layers.{l}.";
            var h = RmsNorm(x, weights[p + "input_layernorm.weight"], t, c);
            var attention = Attention(p + "self_attn.", h, t);
            for (int i = 0; i < x.Length; i++) x[i] += attention[i];
            h = RmsNorm(x, weights[p + "post_attention_layernorm.weight"], t, c);
            var gate = Linear(h, p + "mlp.gate_proj", t, c, shape.Intermediate, shape.MlpBias);
            var up = Linear(h, p + "mlp.up_proj", t, c, shape.Intermediate, shape.MlpBias);
            for (int i = 0; i < gate.Length; i++) gate[i] = gate[i] / (1 + Math.Exp(-gate[i])) * up[i];
            var down = Linear(gate, p + "mlp.down_proj", t, shape.Intermediate, c, shape.MlpBias);
            for (int i = 0; i < x.Length; i++) x[i] += down[i];
        }
        var normed = RmsNorm(x, weights["model.norm.weight"], t, c);
        var head = shape.Tied ? embed : weights["lm_head.weight"];
        var logits = new double[t * v];
        for (int i = 0; i < t; i++)
            for (int o = 0; o < v; o++)
            {
                double s = 0;
                for (int j = 0; j < c; j++) s += normed[i * c + j] * head[(long)o * c + j];
                logits[i * v + o] = s;
            }
        return logits;
    }

    private double[] Attention(string p, double[] h, int t)
    {
        int nh = shape.Heads, kvh = shape.KvHeads, hs = shape.HeadDim, c = shape.Hidden, group = nh / kvh;
        var q = Linear(h, p + "q_proj", t, c, nh * hs, shape.QkvBias);
        var k = Linear(h, p + "k_proj", t, c, kvh * hs, shape.QkvBias);
        var v = Linear(h, p + "v_proj", t, c, kvh * hs, shape.QkvBias);
        if (shape.QkNorm)
        {
            // Qwen3: RMSNorm over each head of q and of k, before the rotation.
            q = RmsNorm(q, weights[p + "q_norm.weight"], t * nh, hs);
            k = RmsNorm(k, weights[p + "k_norm.weight"], t * kvh, hs);
        }
        var inverse = InverseFrequencies();
        double factor = AttentionScaling();
        Rotate(q, t, nh, hs, inverse, factor);
        Rotate(k, t, kvh, hs, inverse, factor);
        var y = new double[t * nh * hs];
        for (int head = 0; head < nh; head++)
        {
            int kvHead = head / group; // repeat_kv
            for (int i = 0; i < t; i++)
            {
                var scores = new double[i + 1];
                for (int j = 0; j <= i; j++)
                {
                    double s = 0;
                    for (int d = 0; d < hs; d++) s += q[(i * nh + head) * hs + d] * k[(j * kvh + kvHead) * hs + d];
                    scores[j] = s / Math.Sqrt(hs);
                }
                double max = scores.Max(), sum = scores.Sum(s => Math.Exp(s - max));
                for (int d = 0; d < hs; d++)
                {
                    double acc = 0;
                    for (int j = 0; j <= i; j++) acc += Math.Exp(scores[j] - max) / sum * v[(j * kvh + kvHead) * hs + d];
                    y[(i * nh + head) * hs + d] = acc;
                }
            }
        }
        return Linear(y, p + "o_proj", t, nh * hs, c, shape.OutputBias);
    }

    /// <summary>apply_rotary_pos_emb: x·cos + rotate_half(x)·sin on the first rotary dimensions of every head, position = row.</summary>
    private static void Rotate(double[] x, int t, int heads, int hs, double[] inverse, double factor)
    {
        int half = inverse.Length;
        for (int i = 0; i < t; i++)
            for (int h = 0; h < heads; h++)
            {
                int at = (i * heads + h) * hs;
                for (int f = 0; f < half; f++)
                {
                    double angle = i * inverse[f], cos = Math.Cos(angle) * factor, sin = Math.Sin(angle) * factor;
                    double a = x[at + f], b = x[at + f + half];
                    x[at + f] = a * cos - b * sin;
                    x[at + f + half] = b * cos + a * sin;
                }
            }
    }

    /// <summary>The inverse frequencies of the checkpoint's rope_type (modeling_rope_utils).</summary>
    private double[] InverseFrequencies()
    {
        int dim = (int)(shape.HeadDim * shape.PartialRotary);
        var baseFreq = new double[dim / 2];
        for (int i = 0; i < baseFreq.Length; i++) baseFreq[i] = 1.0 / Math.Pow(shape.RopeTheta, (2.0 * i) / dim);
        switch (shape.RopeType)
        {
            case "default":
                return baseFreq;
            case "linear":
                return baseFreq.Select(f => f / shape.Factor).ToArray();
            case "llama3":
            {
                double lowWavelen = shape.OriginalMax / shape.LowFreq, highWavelen = shape.OriginalMax / shape.HighFreq;
                return baseFreq.Select(f =>
                {
                    double wavelen = 2 * Math.PI / f;
                    if (wavelen < highWavelen) return f;
                    if (wavelen > lowWavelen) return f / shape.Factor;
                    double smooth = (shape.OriginalMax / wavelen - shape.LowFreq) / (shape.HighFreq - shape.LowFreq);
                    return (1 - smooth) * f / shape.Factor + smooth * f;
                }).ToArray();
            }
            case "yarn":
            {
                double CorrectionDim(double rotations) => dim * Math.Log(shape.OriginalMax / (rotations * 2 * Math.PI)) / (2 * Math.Log(shape.RopeTheta));
                double low = Math.Max(Math.Floor(CorrectionDim(shape.BetaFast)), 0), high = Math.Min(Math.Ceiling(CorrectionDim(shape.BetaSlow)), dim - 1);
                if (low == high) high += 0.001;
                var result = new double[baseFreq.Length];
                for (int i = 0; i < result.Length; i++)
                {
                    double ramp = Math.Min(Math.Max((i - low) / (high - low), 0), 1);
                    double interpolation = baseFreq[i] / shape.Factor, extrapolation = baseFreq[i], extrapolationFactor = 1 - ramp;
                    result[i] = interpolation * (1 - extrapolationFactor) + extrapolation * extrapolationFactor;
                }
                return result;
            }
            default:
                throw new ArgumentException($"rope type {shape.RopeType}");
        }
    }

    private double AttentionScaling() =>
        shape.RopeType != "yarn" ? 1 : shape.AttentionFactor ?? (shape.Factor <= 1 ? 1 : 0.1 * Math.Log(shape.Factor) + 1);

    private double[] RmsNorm(double[] x, double[] w, int t, int c)
    {
        var y = new double[x.Length];
        for (int i = 0; i < t; i++)
        {
            double squares = 0;
            for (int j = 0; j < c; j++) squares += x[i * c + j] * x[i * c + j];
            double r = 1 / Math.Sqrt(squares / c + shape.RmsEps);
            for (int j = 0; j < c; j++) y[i * c + j] = w[j] * (x[i * c + j] * r);
        }
        return y;
    }

    private double[] Linear(double[] x, string name, int n, int cin, int cout, bool bias)
    {
        var w = weights[name + ".weight"];
        var b = bias ? weights[name + ".bias"] : null;
        var y = new double[n * cout];
        for (int i = 0; i < n; i++)
            for (int o = 0; o < cout; o++)
            {
                double s = b?[o] ?? 0;
                for (int j = 0; j < cin; j++) s += x[i * cin + j] * w[(long)o * cin + j];
                y[i * cout + o] = s;
            }
        return y;
    }
}

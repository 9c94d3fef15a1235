namespace LoraRuntime.Tests.Gpt2;

/// <summary>A LoRA (or DoRA) adapter on one GPT-2 Conv1D module, as PEFT computes it: A [R, in], B [out, R], s, magnitude [out].</summary>
internal sealed record ReferenceLora(double[] A, double[] B, int Rank, double Scale, double[]? Magnitude = null);

/// <summary>
/// GPT-2 in float64, written from Hugging Face's modeling_gpt2 (GPT2LMHeadModel, eval mode) and PEFT's LoRA layer,
/// independent of the runtime's layers: it reads the checkpoint's own tensors by their Hugging Face names (no
/// "transformer." prefix), Conv1D weights [in, out] used as y = x·W + b.
/// </summary>
internal sealed class Gpt2Reference(IReadOnlyDictionary<string, double[]> tensors, int layers, int heads, int channels, double epsilon = 1e-5)
{
    /// <summary>Adapters by module name ("h.0.attn.c_attn").</summary>
    public Dictionary<string, ReferenceLora> Adapters { get; } = new(StringComparer.Ordinal);

    /// <summary>The logits [T, V] of one sequence.</summary>
    public double[] Logits(int[] ids)
    {
        int t = ids.Length, c = channels;
        var wte = tensors["wte.weight"];
        int v = wte.Length / c;
        var x = new double[t * c];
        for (int i = 0; i < t; i++)
            for (int j = 0; j < c; j++) x[i * c + j] = wte[ids[i] * c + j] + tensors["wpe.weight"][i * c + j];
        for (int l = 0; l < layers; l++)
        {
            string h = $"h.{l}.";
            var a = Attention(LayerNorm(x, h + "ln_1", t), h, t);
            for (int i = 0; i < x.Length; i++) x[i] += a[i];
            var fc = Conv1D(LayerNorm(x, h + "ln_2", t), h + "mlp.c_fc", t, c, 4 * c);
            for (int i = 0; i < fc.Length; i++) fc[i] = GeluNew(fc[i]);
            var m = Conv1D(fc, h + "mlp.c_proj", t, 4 * c, c);
            for (int i = 0; i < x.Length; i++) x[i] += m[i];
        }
        var final = LayerNorm(x, "ln_f", t);
        // lm_head is tied: logits = ln_f(x) · wteᵀ.
        var logits = new double[t * v];
        for (int i = 0; i < t; i++)
            for (int k = 0; k < v; k++)
            {
                double s = 0;
                for (int j = 0; j < c; j++) s += final[i * c + j] * wte[k * c + j];
                logits[i * v + k] = s;
            }
        return logits;
    }

    /// <summary>HF's NewGELUActivation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).</summary>
    public static double GeluNew(double x) => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

    private double[] LayerNorm(double[] x, string name, int t)
    {
        int c = channels;
        var w = tensors[name + ".weight"];
        var b = tensors[name + ".bias"];
        var y = new double[x.Length];
        for (int i = 0; i < t; i++)
        {
            double mean = 0, variance = 0;
            for (int j = 0; j < c; j++) mean += x[i * c + j];
            mean /= c;
            for (int j = 0; j < c; j++) variance += (x[i * c + j] - mean) * (x[i * c + j] - mean);
            variance /= c;
            double rstd = 1 / Math.Sqrt(variance + epsilon);
            for (int j = 0; j < c; j++) y[i * c + j] = (x[i * c + j] - mean) * rstd * w[j] + b[j];
        }
        return y;
    }

    private double[] Attention(double[] x, string h, int t)
    {
        int c = channels, hs = c / heads;
        var qkv = Conv1D(x, h + "attn.c_attn", t, c, 3 * c);
        var y = new double[t * c];
        var scores = new double[t];
        for (int head = 0; head < heads; head++)
            for (int i = 0; i < t; i++)
            {
                double max = double.NegativeInfinity;
                for (int j = 0; j <= i; j++)
                {
                    double s = 0;
                    for (int d = 0; d < hs; d++) s += qkv[i * 3 * c + head * hs + d] * qkv[j * 3 * c + c + head * hs + d];
                    scores[j] = s / Math.Sqrt(hs);
                    max = Math.Max(max, scores[j]);
                }
                double sum = 0;
                for (int j = 0; j <= i; j++) sum += scores[j] = Math.Exp(scores[j] - max);
                for (int d = 0; d < hs; d++)
                {
                    double acc = 0;
                    for (int j = 0; j <= i; j++) acc += scores[j] / sum * qkv[j * 3 * c + 2 * c + head * hs + d];
                    y[i * c + head * hs + d] = acc;
                }
            }
        return Conv1D(y, h + "attn.c_proj", t, c, c);
    }

    /// <summary>
    /// y [T, out] = x·W + b with W [in, out]; with an adapter, PEFT's y += s·(x·Aᵀ)·Bᵀ, or DoRA's
    /// y = b + (m / ‖W + s·BA‖_row)·(x·(W + s·BA)) with the norm per output.
    /// </summary>
    private double[] Conv1D(double[] x, string name, int t, int fanIn, int fanOut)
    {
        var w = tensors[name + ".weight"];
        var b = tensors[name + ".bias"];
        // The effective weight per output o, column o of W (+ s·(BA)[o, :]).
        var effective = new double[fanOut * fanIn];
        for (int o = 0; o < fanOut; o++)
            for (int i = 0; i < fanIn; i++) effective[o * fanIn + i] = w[i * fanOut + o];
        var gain = new double[fanOut];
        Array.Fill(gain, 1.0);
        if (Adapters.TryGetValue(name, out var lora))
        {
            for (int o = 0; o < fanOut; o++)
                for (int i = 0; i < fanIn; i++)
                {
                    double ba = 0;
                    for (int r = 0; r < lora.Rank; r++) ba += lora.B[o * lora.Rank + r] * lora.A[r * fanIn + i];
                    effective[o * fanIn + i] += lora.Scale * ba;
                }
            if (lora.Magnitude is { } m)
                for (int o = 0; o < fanOut; o++)
                {
                    double norm = 0;
                    for (int i = 0; i < fanIn; i++) norm += effective[o * fanIn + i] * effective[o * fanIn + i];
                    gain[o] = m[o] / Math.Sqrt(norm);
                }
        }
        var y = new double[t * fanOut];
        for (int row = 0; row < t; row++)
            for (int o = 0; o < fanOut; o++)
            {
                double s = 0;
                for (int i = 0; i < fanIn; i++) s += x[row * fanIn + i] * effective[o * fanIn + i];
                y[row * fanOut + o] = b[o] + gain[o] * s;
            }
        return y;
    }
}

using PrimitiveReference = LoraRuntime.Tests.Primitives.Reference;

namespace LoraRuntime.Tests.Layers;

/// <summary>A LoRA adapter as the float64 reference applies it to the rows [Offset, Offset + Features) of a linear layer.</summary>
/// <param name="A">The name of A [R, in] in the parameter dictionary.</param>
/// <param name="B">The name of B [out, R].</param>
/// <param name="Offset">The first output feature adapted.</param>
/// <param name="Features">How many output features are adapted.</param>
/// <param name="Rank">R.</param>
/// <param name="Scale">s.</param>
/// <param name="Magnitude">DoRA's magnitude [out], or null for plain LoRA.</param>
/// <param name="FixedNorm">DoRA's row norms as constants (PEFT detaches them), or null to compute them.</param>
/// <param name="DropoutSeed">The dropout mask's seed when dropout applies, with its probability.</param>
internal sealed record ReferenceAdapter(string A, string B, int Offset, int Features, int Rank, double Scale,
    string? Magnitude = null, double[]? FixedNorm = null, (ulong Seed, float P)? DropoutSeed = null);

/// <summary>
/// The layers in float64, written from their definitions with plain loops: parameters come from a dictionary
/// keyed by parameter name, so finite differences can perturb any of them.
/// </summary>
internal sealed class ReferenceModel(Dictionary<string, double[]> parameters)
{
    public Dictionary<string, double[]> P { get; } = parameters;

    /// <summary>Adapters by linear layer name.</summary>
    public Dictionary<string, List<ReferenceAdapter>> Adapters { get; } = [];

    public double[] Linear(string name, double[] x, int n, int cin, int cout)
    {
        var w = P[name + ".weight"];
        var y = new double[n * cout];
        for (int i = 0; i < n; i++)
            for (int o = 0; o < cout; o++)
            {
                double s = 0;
                for (int c = 0; c < cin; c++) s += x[i * cin + c] * w[o * cin + c];
                y[i * cout + o] = s;
            }
        foreach (var adapter in Adapters.GetValueOrDefault(name) ?? []) ApplyAdapter(adapter, w, x, y, n, cin, cout);
        if (P.TryGetValue(name + ".bias", out var b))
            for (int i = 0; i < y.Length; i++) y[i] += b[i % cout];
        return y;
    }

    /// <summary>y[:, slice] += s·(dropout(x) Aᵀ) Bᵀ, or for DoRA y ← (m/n) ⊙ (y + s·x Aᵀ Bᵀ).</summary>
    private void ApplyAdapter(ReferenceAdapter adapter, double[] w, double[] x, double[] y, int n, int cin, int cout)
    {
        double[] a = P[adapter.A], bm = P[adapter.B];
        int r = adapter.Rank;
        var xd = (double[])x.Clone();
        if (adapter.DropoutSeed is { } dropout)
        {
            uint threshold = Backend.DropoutThreshold(dropout.P);
            for (int i = 0; i < xd.Length; i++)
                xd[i] = Backend.DropoutBits(dropout.Seed, (ulong)i) >> 8 >= threshold ? xd[i] * (1 / (1 - (double)dropout.P)) : 0;
        }
        for (int i = 0; i < n; i++)
        {
            var h = new double[r];
            for (int k = 0; k < r; k++)
                for (int c = 0; c < cin; c++) h[k] += xd[i * cin + c] * a[k * cin + c];
            for (int o = 0; o < adapter.Features; o++)
            {
                double s = 0;
                for (int k = 0; k < r; k++) s += h[k] * bm[o * r + k];
                y[i * cout + adapter.Offset + o] += adapter.Scale * s;
            }
        }
        if (adapter.Magnitude is null) return;
        // DoRA rescales the module's columns by m / ‖W + s·BA‖ of its rows.
        var m = P[adapter.Magnitude];
        var rows = w.AsSpan(adapter.Offset * cin, adapter.Features * cin).ToArray();
        var norm = adapter.FixedNorm ?? DoraNorms(rows, a, bm, adapter.Features, cin, r, adapter.Scale);
        for (int i = 0; i < n; i++)
            for (int o = 0; o < adapter.Features; o++) y[i * cout + adapter.Offset + o] *= m[o] / norm[o];
    }

    /// <summary>‖W + s·BA‖ per row.</summary>
    public static double[] DoraNorms(double[] w, double[] a, double[] b, int cout, int cin, int r, double scale)
    {
        var norms = new double[cout];
        for (int o = 0; o < cout; o++)
        {
            double sum = 0;
            for (int c = 0; c < cin; c++)
            {
                double v = w[o * cin + c];
                for (int k = 0; k < r; k++) v += scale * b[o * r + k] * a[k * cin + c];
                sum += v * v;
            }
            norms[o] = Math.Sqrt(sum);
        }
        return norms;
    }

    public double[] LayerNorm(string name, double[] x, int n, int c) =>
        PrimitiveReference.LayerNorm(x, P[name + ".weight"], P[name + ".bias"], n, c, 1e-5).Output;

    public double[] Mlp(string name, double[] x, int n, int c)
    {
        var hidden = Linear(name + ".fc", x, n, c, 4 * c).Select(PrimitiveReference.Gelu).ToArray();
        return Linear(name + ".proj", hidden, n, 4 * c, c);
    }

    /// <summary>Causal multi-head attention with a fused QKV projection.</summary>
    public double[] Attention(string name, double[] x, int batch, int time, int c, int heads)
    {
        int hs = c / heads, n = batch * time;
        var qkv = Linear(name + ".qkv", x, n, c, 3 * c);
        var y = new double[n * c];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int t = 0; t < time; t++)
                {
                    double Q(int tt, int d) => qkv[(b * time + tt) * 3 * c + h * hs + d];
                    double K(int tt, int d) => qkv[(b * time + tt) * 3 * c + c + h * hs + d];
                    double V(int tt, int d) => qkv[(b * time + tt) * 3 * c + 2 * c + h * hs + d];
                    var scores = new double[t + 1];
                    for (int s = 0; s <= t; s++)
                    {
                        for (int d = 0; d < hs; d++) scores[s] += Q(t, d) * K(s, d);
                        scores[s] /= Math.Sqrt(hs);
                    }
                    var p = Softmax(scores);
                    for (int d = 0; d < hs; d++)
                        for (int s = 0; s <= t; s++) y[(b * time + t) * c + h * hs + d] += p[s] * V(s, d);
                }
        return Linear(name + ".o", y, n, c, c);
    }

    /// <summary>
    /// Linformer attention: per head, keys and values projected along the sequence by E, F [K, maxT] (the first T
    /// columns), then a non-causal softmax over the K projected positions.
    /// </summary>
    public double[] LowRankAttention(string name, double[] x, int batch, int time, int c, int heads, int projected, int maxTime,
        bool shareHeads, bool shareKeyValue)
    {
        int hs = c / heads, n = batch * time;
        var qkv = Linear(name + ".qkv", x, n, c, 3 * c);
        double[] e = P[name + ".E"], f = shareKeyValue ? e : P[name + ".F"];
        var y = new double[n * c];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
            {
                long projection = shareHeads ? 0 : (long)h * projected * maxTime;
                var kp = new double[projected, hs];
                var vp = new double[projected, hs];
                for (int k = 0; k < projected; k++)
                    for (int t = 0; t < time; t++)
                        for (int d = 0; d < hs; d++)
                        {
                            int at = (b * time + t) * 3 * c + h * hs + d;
                            kp[k, d] += e[projection + k * maxTime + t] * qkv[at + c];
                            vp[k, d] += f[projection + k * maxTime + t] * qkv[at + 2 * c];
                        }
                for (int t = 0; t < time; t++)
                {
                    var scores = new double[projected];
                    for (int k = 0; k < projected; k++)
                    {
                        for (int d = 0; d < hs; d++) scores[k] += qkv[(b * time + t) * 3 * c + h * hs + d] * kp[k, d];
                        scores[k] /= Math.Sqrt(hs);
                    }
                    var p = Softmax(scores);
                    for (int d = 0; d < hs; d++)
                        for (int k = 0; k < projected; k++) y[(b * time + t) * c + h * hs + d] += p[k] * vp[k, d];
                }
            }
        return Linear(name + ".o", y, n, c, c);
    }

    public double[] Block(string name, double[] x, int batch, int time, int c, int heads)
    {
        int n = batch * time;
        var attn = Attention(name + ".attn", LayerNorm(name + ".ln1", x, n, c), batch, time, c, heads);
        var residual = x.Select((v, i) => v + attn[i]).ToArray();
        var mlp = Mlp(name + ".mlp", LayerNorm(name + ".ln2", residual, n, c), n, c);
        return residual.Select((v, i) => v + mlp[i]).ToArray();
    }

    public double[] Stack(int layers, double[] x, int batch, int time, int c, int heads)
    {
        for (int l = 0; l < layers; l++) x = Block($"blocks.{l}", x, batch, time, c, heads);
        return x;
    }

    private static double[] Softmax(double[] scores)
    {
        double max = scores.Max();
        var p = scores.Select(s => Math.Exp(s - max)).ToArray();
        double sum = p.Sum();
        return p.Select(v => v / sum).ToArray();
    }
}

using LoraRuntime.Layers;

namespace LoraRuntime.Cli.Bench;

/// <summary>
/// Times full causal self-attention ("attention_full") against Linformer attention ("attention_low_rank") over one
/// sequence of length T (batch 1), each with its activations reserved for exactly that T: for inference when timing
/// the forward pass, for training when timing forward + backward. The records carry the bytes reserved, which grow
/// as O(T²) and O(T·K). The ratio is the low-rank median over the full one.
/// </summary>
internal static class AttentionBench
{
    /// <summary>The two cases at length <paramref name="time"/>.</summary>
    public static IReadOnlyList<BenchRecord> Run(Backend backend, int time, int channels, int heads, int projected, bool backward, int warmup,
        int? reps, double targetSeconds = BenchTimer.DefaultTargetSeconds)
    {
        var full = Case(backend, time, channels, heads, projected, lowRank: false, backward, warmup, reps, targetSeconds, null);
        var lowRank = Case(backend, time, channels, heads, projected, lowRank: true, backward, warmup, reps, targetSeconds, full.MedianMs);
        return [full with { Ratio = 1 }, lowRank];
    }

    private static BenchRecord Case(Backend backend, int time, int channels, int heads, int projected, bool lowRank, bool backward, int warmup,
        int? reps, double targetSeconds, double? fullMs)
    {
        using var parameters = new ParameterSet(backend, "attention");
        using var activations = new Activations(backend, 1, time, training: backward);
        Action<Tensor, Tensor> forward;
        Action<Tensor, Tensor, Tensor> back;
        if (lowRank)
        {
            var attention = new LowRankAttention(parameters, activations, "attn", channels, heads, new LowRankAttentionOptions { ProjectedLength = projected });
            (forward, back) = (attention.Forward, (dx, dy, x) => attention.Backward(dx, dy, x));
            Reserve(parameters, activations, backward);
        }
        else
        {
            var attention = new CausalSelfAttention(parameters, activations, "attn", channels, heads);
            (forward, back) = (attention.Forward, (dx, dy, x) => attention.Backward(dx, dy, x));
            Reserve(parameters, activations, backward);
        }
        var random = new Random(99);
        using var input = backend.FromArray(BenchData.Uniform(random, time * channels, 1), 1, time, channels);
        using var output = backend.Zeros(1, time, channels);
        using var dInput = backend.Zeros(1, time, channels);
        Action run = backward ? () => { forward(output, input); back(dInput, output, input); } : () => forward(output, input);
        var timing = BenchTimer.Measure(run, backend.Synchronize, warmup, reps, targetSeconds);
        // Multiply-adds of the attention core (the projections are the same for both): QKᵀ and PV, or the two
        // sequence projections, QK′ᵀ and PV′; a backward pass costs about twice its forward.
        double core = lowRank ? 8.0 * time * projected * channels : 4.0 * time * time * channels;
        double flops = (8.0 * time * channels * channels + core) * (backward ? 3 : 1);
        string op = lowRank ? "attention_low_rank" : "attention_full";
        int[] shape = lowRank ? [time, channels, heads, projected] : [time, channels, heads];
        return new BenchRecord(op, backend.Name, shape, backward ? "train" : "forward", timing.MedianMs, flops / (timing.MedianMs * 1e-3) / 1e9,
            timing.Reps, double.NaN, fullMs is { } ms ? timing.MedianMs / ms : null, activations.Bytes);
    }

    private static void Reserve(ParameterSet parameters, Activations activations, bool trained)
    {
        parameters.Reserve(withGradients: trained);
        activations.Reserve();
        var random = new Random(5);
        foreach (var p in parameters.Parameters) p.Value.CopyFrom(BenchData.Uniform(random, (int)p.Shape.Length, 0.05f));
    }
}

using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;

namespace LoraRuntime.Cli.Bench;

/// <summary>
/// Times a LoRA linear layer y = x Wᵀ + b + s·(x Aᵀ) Bᵀ, W [C, C], at one sequence length T (batch 1): the base
/// Linear alone ("linear_forward"), the unmerged adapter ("lora_forward"), the adapter merged into W
/// ("lora_merged_forward") and the adapter's backward pass with a frozen base ("lora_backward": dA, dB and dx).
/// The cases run interleaved, round by round (<see cref="BenchTimer.MeasureInterleaved"/>); forward results are
/// checked against float64 on sampled rows; each case's ratio is its median over the base's.
/// </summary>
internal static class LoraBench
{
    /// <summary>Rows of the output checked against float64 per case.</summary>
    public const int CheckedRows = 3;

    /// <summary>The four cases at sequence length <paramref name="time"/>, width <paramref name="channels"/> and rank <paramref name="rank"/>.</summary>
    public static IReadOnlyList<BenchRecord> Run(Backend backend, int time, int channels, int rank, int warmup, int? reps,
        double targetSeconds = BenchTimer.DefaultTargetSeconds)
    {
        using var parameters = new ParameterSet(backend, "base");
        var linear = new Linear(parameters, "proj", channels, channels);
        parameters.Reserve(withGradients: false);
        var random = new Random(1234);
        float bound = 1 / MathF.Sqrt(channels);
        float[] w = BenchData.Uniform(random, channels * channels, bound), b = BenchData.Uniform(random, channels, bound), x = BenchData.Uniform(random, time * channels, 1);
        linear.Weight.Value.CopyFrom(w);
        linear.Bias!.Value.CopyFrom(b);
        var lora = new LoraLinear(linear);
        // A trained-looking adapter: B is not zero (PEFT's init_lora_weights=False), s = 2.
        using var adapter = lora.AddAdapter("bench", new LoraOptions { Rank = rank, Alpha = 2 * rank, Init = LoraInit.Random }, 1, time);
        adapter.Training = false;
        var weights = adapter.Modules[0];
        float[] a = weights.A.Value.ToArray(), bm = weights.B.Value.ToArray();

        using var input = backend.FromArray(x, 1, time, channels);
        using var output = backend.Zeros(1, time, channels);
        using var dOutput = backend.FromArray(BenchData.Uniform(random, time * channels, 1), 1, time, channels);
        using var dInput = backend.Zeros(1, time, channels);
        int[] shape = [time, channels, rank];
        double baseFlops = 2.0 * time * channels * channels, loraFlops = 4.0 * time * channels * rank;
        var cases = new (string Op, double Flops, float CheckScale, Action Setup, Action Run)[]
        {
            ("linear_forward", baseFlops, 0, lora.DisableAdapters, () => linear.Forward(output, input)),
            ("lora_forward", baseFlops + loraFlops, weights.Scale, () => Use(lora, adapter, merged: false, training: false), () => lora.Forward(output, input)),
            ("lora_merged_forward", baseFlops, weights.Scale, () => Use(lora, adapter, merged: true, training: false), () => lora.Forward(output, input)),
            ("lora_backward", baseFlops + 2 * loraFlops, float.NaN, () =>
            {
                Use(lora, adapter, merged: false, training: true);
                lora.Forward(output, input);
            }, () => lora.Backward(dInput, dOutput, input)),
        };
        var timings = BenchTimer.MeasureInterleaved(cases.Select(c => (c.Setup, c.Run)).ToArray(), backend.Synchronize, warmup, reps, targetSeconds);
        var records = new List<BenchRecord>(cases.Length);
        for (int i = 0; i < cases.Length; i++)
        {
            var (op, flops, checkScale, setup, run) = cases[i];
            double error = double.NaN;
            if (!float.IsNaN(checkScale))
            {
                setup();
                run();
                error = SampledError(output.ToArray(), x, w, b, a, bm, time, channels, rank, checkScale, random);
            }
            var timing = timings[i];
            records.Add(new BenchRecord(op, backend.Name, shape, "NT", timing.MedianMs, flops / (timing.MedianMs * 1e-3) / 1e9, timing.Reps, error,
                timing.MedianMs / timings[0].MedianMs));
        }
        lora.Unmerge();
        return records;
    }

    /// <summary>Puts the module in a case's state: adapters on, merged or not, training (dropout, backward) or not.</summary>
    private static void Use(LoraLinear lora, LoraAdapter adapter, bool merged, bool training)
    {
        lora.EnableAdapters();
        if (merged) lora.Merge();
        else lora.Unmerge();
        adapter.Training = training;
    }

    /// <summary>
    /// max |y − ref| / max |ref| over <see cref="CheckedRows"/> rows (the first, the last, one at random), where ref is
    /// x Wᵀ + b + scale·(x Aᵀ) Bᵀ in float64.
    /// </summary>
    internal static double SampledError(float[] y, float[] x, float[] w, float[] b, float[] a, float[] bm, int time, int channels, int rank,
        float scale, Random random)
    {
        double maxError = 0, maxReference = 0;
        var h = new double[rank];
        for (int s = 0; s < CheckedRows; s++)
        {
            int t = s switch { 0 => 0, 1 => time - 1, _ => random.Next(time) };
            for (int k = 0; k < rank; k++)
            {
                h[k] = 0;
                for (int c = 0; c < channels; c++) h[k] += (double)x[t * channels + c] * a[k * channels + c];
            }
            for (int o = 0; o < channels; o++)
            {
                double reference = b[o];
                for (int c = 0; c < channels; c++) reference += (double)x[t * channels + c] * w[(long)o * channels + c];
                for (int k = 0; k < rank; k++) reference += scale * h[k] * bm[o * rank + k];
                maxError = Math.Max(maxError, Math.Abs(y[t * channels + o] - reference));
                maxReference = Math.Max(maxReference, Math.Abs(reference));
            }
        }
        return maxReference > 0 ? maxError / maxReference : maxError;
    }
}

using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;

namespace LoraRuntime.Cli.Bench;

/// <summary>
/// Times a LoRA linear layer y = x Wᵀ + b + s·(x Aᵀ) Bᵀ, W [C, C], at one sequence length T (batch 1): the base
/// Linear alone ("linear_forward"), the unmerged adapter ("lora_forward"), the adapter merged into W
/// ("lora_merged_forward") and the adapter's backward pass with a frozen base ("lora_backward": dA, dB and dx).
/// Forward results are checked against float64 on sampled rows; each case's ratio is its median over the base's.
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
        var records = new List<BenchRecord>(4);

        BenchRecord Case(string op, double flops, Action run, Func<double> check)
        {
            var timing = BenchTimer.Measure(run, backend.Synchronize, warmup, reps, targetSeconds);
            double ratio = records.Count == 0 ? 1 : timing.MedianMs / records[0].MedianMs;
            var record = new BenchRecord(op, backend.Name, shape, "NT", timing.MedianMs, flops / (timing.MedianMs * 1e-3) / 1e9, timing.Reps, check(), ratio);
            records.Add(record);
            return record;
        }
        double ForwardError(float scale) => SampledError(output.ToArray(), x, w, b, a, bm, time, channels, rank, scale, random);

        lora.DisableAdapters();
        Case("linear_forward", baseFlops, () => linear.Forward(output, input), () => ForwardError(0));
        lora.EnableAdapters();
        Case("lora_forward", baseFlops + loraFlops, () => lora.Forward(output, input), () => ForwardError(weights.Scale));
        lora.Merge();
        Case("lora_merged_forward", baseFlops, () => lora.Forward(output, input), () => ForwardError(weights.Scale));
        lora.Unmerge();
        adapter.Training = true;
        lora.Forward(output, input);
        Case("lora_backward", baseFlops + 2 * loraFlops, () => lora.Backward(dInput, dOutput, input), () => double.NaN);
        return records;
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

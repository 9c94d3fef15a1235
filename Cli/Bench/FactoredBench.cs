using LoraRuntime.Layers;

namespace LoraRuntime.Cli.Bench;

/// <summary>
/// Times what <c>lora compress</c> buys: a dense Linear y = x Wᵀ + b, W [OC, C] ("linear_forward"), against the same
/// layer factored at rank K, y = (x Vᵀ) Uᵀ + b with U [OC, K], V [K, C] ("factored_forward"), and the factored
/// layer's backward pass with frozen factors ("factored_backward": dx only, as when fine-tuning a compressed model
/// with LoRA), at one sequence length T (batch 1). Cases run interleaved; forward results are checked against
/// float64 on sampled rows; each ratio is the case's median over the dense forward's.
/// </summary>
internal static class FactoredBench
{
    /// <summary>The three cases at sequence length <paramref name="time"/> for a [<paramref name="outFeatures"/>, <paramref name="inFeatures"/>] layer at rank <paramref name="rank"/>.</summary>
    public static IReadOnlyList<BenchRecord> Run(Backend backend, int time, int inFeatures, int outFeatures, int rank, int warmup, int? reps,
        double targetSeconds = BenchTimer.DefaultTargetSeconds)
    {
        using var activations = new Activations(backend, 1, time, training: true, "bench activations");
        using var dense = new ParameterSet(backend, "dense");
        using var factored = new ParameterSet(backend, "factored") { FactoredRanks = new Dictionary<string, int> { ["fc"] = rank } };
        var linear = new Linear(dense, "fc", inFeatures, outFeatures, activations: activations);
        var lowRank = new Linear(factored, "fc", inFeatures, outFeatures, activations: activations);
        dense.Reserve(withGradients: false);
        factored.Reserve(withGradients: false);
        activations.Reserve();
        var random = new Random(1234);
        float[] u = BenchData.Uniform(random, outFeatures * rank, 1 / MathF.Sqrt(rank)), v = BenchData.Uniform(random, rank * inFeatures, 1 / MathF.Sqrt(inFeatures));
        float[] b = BenchData.Uniform(random, outFeatures, 0.1f), x = BenchData.Uniform(random, time * inFeatures, 1);
        lowRank.FactorU!.Value.CopyFrom(u);
        lowRank.FactorV!.Value.CopyFrom(v);
        lowRank.Bias!.Value.CopyFrom(b);
        linear.Bias!.Value.CopyFrom(b);
        // The dense layer holds W = U·V, so both compute the same function.
        using (var ut = backend.FromArray(u, outFeatures, rank))
        using (var vt = backend.FromArray(v, rank, inFeatures))
            backend.MatMul(linear.Weight.Value, ut, vt);

        using var input = backend.FromArray(x, 1, time, inFeatures);
        using var output = backend.Zeros(1, time, outFeatures);
        using var dOutput = backend.FromArray(BenchData.Uniform(random, time * outFeatures, 1), 1, time, outFeatures);
        using var dInput = backend.Zeros(1, time, inFeatures);
        int[] shape = [time, inFeatures, outFeatures, rank];
        double denseFlops = 2.0 * time * inFeatures * outFeatures, factoredFlops = 2.0 * time * rank * (inFeatures + outFeatures);
        var cases = new (string Op, double Flops, bool Check, Action Setup, Action Run)[]
        {
            ("linear_forward", denseFlops, true, () => { }, () => linear.Forward(output, input)),
            ("factored_forward", factoredFlops, true, () => { }, () => lowRank.Forward(output, input)),
            ("factored_backward", factoredFlops, false, () => lowRank.Forward(output, input), () => lowRank.Backward(dInput, dOutput, input)),
        };
        var timings = BenchTimer.MeasureInterleaved(cases.Select(c => (c.Setup, c.Run)).ToArray(), backend.Synchronize, warmup, reps, targetSeconds);
        var records = new List<BenchRecord>(cases.Length);
        for (int i = 0; i < cases.Length; i++)
        {
            var (op, flops, check, setup, run) = cases[i];
            double error = double.NaN;
            if (check)
            {
                setup();
                run();
                error = SampledError(output.ToArray(), x, u, v, b, time, inFeatures, outFeatures, rank, random);
            }
            var timing = timings[i];
            records.Add(new BenchRecord(op, backend.Name, shape, "NT", timing.MedianMs, flops / (timing.MedianMs * 1e-3) / 1e9, timing.Reps, error,
                timing.MedianMs / timings[0].MedianMs));
        }
        return records;
    }

    /// <summary>max |y − ref| / max |ref| over three rows (first, last, one at random), ref = (x Vᵀ) Uᵀ + b in float64.</summary>
    private static double SampledError(float[] y, float[] x, float[] u, float[] v, float[] b, int time, int inFeatures, int outFeatures, int rank, Random random)
    {
        double maxError = 0, maxReference = 0;
        var h = new double[rank];
        for (int s = 0; s < LoraBench.CheckedRows; s++)
        {
            int t = s switch { 0 => 0, 1 => time - 1, _ => random.Next(time) };
            for (int k = 0; k < rank; k++)
            {
                h[k] = 0;
                for (int c = 0; c < inFeatures; c++) h[k] += (double)x[t * inFeatures + c] * v[k * inFeatures + c];
            }
            for (int o = 0; o < outFeatures; o++)
            {
                double reference = b[o];
                for (int k = 0; k < rank; k++) reference += h[k] * u[o * rank + k];
                maxError = Math.Max(maxError, Math.Abs(y[t * outFeatures + o] - reference));
                maxReference = Math.Max(maxReference, Math.Abs(reference));
            }
        }
        return maxReference > 0 ? maxError / maxReference : maxError;
    }
}

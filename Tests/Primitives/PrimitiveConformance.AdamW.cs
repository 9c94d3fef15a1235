using Xunit;

namespace LoraRuntime.Tests.Primitives;

// AdamW against a float64 transcription of torch.optim.AdamW, at every length and a few hyper-parameter sets.
public abstract partial class PrimitiveConformance
{
    /// <summary>Runs one step on the backend and in float64 and compares parameters and both moments.</summary>
    private void AdamWMatches(Random rng, int n, float lr, float beta1, float beta2, float epsilon, float weightDecay, int step, bool freshMoments)
    {
        float[] p = Uniform(rng, n), g = Uniform(rng, n);
        float[] m = freshMoments ? new float[n] : Uniform(rng, n, -0.1f, 0.1f);
        float[] v = freshMoments ? new float[n] : Uniform(rng, n, 0, 0.01f);
        Tensor pt = Upload(p, n), mt = Upload(m, n), vt = Upload(v, n);
        Backend.AdamWStep(pt, Upload(g, n), mt, vt, lr, beta1, beta2, epsilon, weightDecay, step);
        double[] pd = Expect.Widen(p), md = Expect.Widen(m), vd = Expect.Widen(v);
        Reference.AdamW(pd, Expect.Widen(g), md, vd, lr, beta1, beta2, epsilon, weightDecay, step);
        string what = $"AdamW n = {n}, lr = {lr}, step = {step}";
        // β1·m + (1 − β1)·g may cancel: the error is absolute, ulps of the terms (≤ 0.1).
        Expect.Close(mt.ToArray(), md, 1e-6, 3e-8, what + " m");
        Expect.Close(vt.ToArray(), vd, 1e-6, 1e-12, what + " v");
        // p − update: a few ulps of |p| ≤ 1 (lr is large enough here that an error in the update would show).
        Expect.Close(pt.ToArray(), pd, 1e-6, 2.4e-7, what + " p");
    }

    [Fact]
    public void AdamW_matches_float64_at_every_length()
    {
        var rng = new Random(50);
        foreach (int n in Lengths()) AdamWMatches(rng, n, 0.1f, 0.9f, 0.999f, 1e-8f, 0.1f, 3, freshMoments: false);
    }

    [Theory]
    [InlineData(0.1f, 0.9f, 0.999f, 1e-8f, 0f, 1, true)]
    [InlineData(0.05f, 0.9f, 0.95f, 1e-6f, 0.01f, 1, true)]
    [InlineData(0.1f, 0.8f, 0.99f, 1e-3f, 0.5f, 10_000, false)]
    [InlineData(0f, 0.9f, 0.999f, 1e-8f, 0.1f, 7, false)]
    [InlineData(0.1f, 0f, 0f, 1e-8f, 0f, 2, false)]
    public void AdamW_matches_float64_across_hyperparameters(float lr, float beta1, float beta2, float epsilon, float weightDecay, int step, bool freshMoments)
    {
        var rng = new Random(51);
        foreach (int n in new[] { 1, 31, 257 }) AdamWMatches(rng, n, lr, beta1, beta2, epsilon, weightDecay, step, freshMoments);
    }
}

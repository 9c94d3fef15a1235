using Xunit;

namespace LoraRuntime.Tests.Primitives;

// Add, Scale, Axpy and GELU at every length 0..256 (every vector tail) and at one length above the parallel
// threshold, against float64.
public abstract partial class PrimitiveConformance
{
    /// <summary>Odd and above the parallel threshold (64K elements), so tasks split and every tail still runs.</summary>
    protected const int ParallelLength = 200_003;

    /// <summary>0..256, then <see cref="ParallelLength"/>.</summary>
    protected static IEnumerable<int> Lengths() => Enumerable.Range(0, 257).Append(ParallelLength);

    [Fact]
    public void Add_matches_float64_at_every_length()
    {
        var rng = new Random(1);
        foreach (int n in Lengths())
        {
            float[] a = Uniform(rng, n), b = Uniform(rng, n);
            var output = Upload(new float[n], n);
            Backend.Add(output, Upload(a, n), Upload(b, n));
            // One rounding of an exact sum: half an ulp.
            Expect.Close(output.ToArray(), a.Select((x, i) => (double)x + b[i]).ToArray(), 6e-8, 0, $"Add, n = {n}");
        }
    }

    [Fact]
    public void Scale_matches_float64_at_every_length()
    {
        var rng = new Random(2);
        foreach (int n in Lengths())
        {
            float[] x = Uniform(rng, n);
            var output = Upload(new float[n], n);
            Backend.Scale(output, Upload(x, n), -1.375f);
            Expect.Close(output.ToArray(), x.Select(v => -1.375 * v).ToArray(), 6e-8, 0, $"Scale, n = {n}");
        }
    }

    [Fact]
    public void Axpy_matches_float64_at_every_length()
    {
        var rng = new Random(3);
        foreach (int n in Lengths())
        {
            float[] x = Uniform(rng, n), y = Uniform(rng, n);
            var yt = Upload(y, n);
            Backend.Axpy(yt, 0.75f, Upload(x, n));
            // Two roundings (α·x, then + y) of terms below 1 in magnitude.
            Expect.Close(yt.ToArray(), x.Select((v, i) => 0.75 * v + y[i]).ToArray(), 6e-8, 1.2e-7, $"Axpy, n = {n}");
        }
    }

    [Fact]
    public void Elementwise_ops_work_in_place()
    {
        var rng = new Random(4);
        foreach (int n in new[] { 1, 17, 255, ParallelLength })
        {
            float[] a = Uniform(rng, n, -4, 4), b = Uniform(rng, n);
            var at = Upload(a, n);
            Backend.Add(at, at, Upload(b, n));
            Backend.Scale(at, at, 0.5f);
            Backend.Axpy(at, 2f, at);
            Backend.GeluForward(at, at);
            var expected = a.Select((v, i) => Reference.Gelu(3 * (0.5 * ((double)v + b[i])))).ToArray();
            Expect.Close(at.ToArray(), expected, 1e-6, 1e-7, $"in place, n = {n}");
        }
    }

    [Fact]
    public void GeluForward_matches_float64_at_every_length()
    {
        var rng = new Random(5);
        foreach (int n in Lengths())
        {
            float[] x = Uniform(rng, n, -8, 8);
            var output = Upload(new float[n], n);
            Backend.GeluForward(output, Upload(x, n));
            Expect.Close(output.ToArray(), x.Select(v => Reference.Gelu(v)).ToArray(), GeluRtol, GeluAtol, $"GeluForward, n = {n}");
        }
    }

    [Fact]
    public void Gelu_is_finite_and_exact_at_the_extremes()
    {
        float[] x = [0f, -0f, 1e-30f, -1e-30f, 1e-3f, -1e-3f, 10f, -10f, 20f, -20f, 100f, -100f, 1e30f, -1e30f, float.MaxValue];
        var input = Upload(x, x.Length);
        var output = Upload(new float[x.Length], x.Length);
        Backend.GeluForward(output, input);
        var y = output.ToArray();
        Expect.Close(y, x.Select(v => Reference.Gelu(v)).ToArray(), GeluRtol, GeluAtol, "GeluForward at the extremes");
        Assert.All(y, v => Assert.True(float.IsFinite(v)));
        var dInput = Upload(new float[x.Length], x.Length);
        Backend.GeluBackward(dInput, input, Upload(Enumerable.Repeat(1f, x.Length).ToArray(), x.Length));
        var expected = x.Select(v => Reference.GeluDerivative(v)).ToArray();
        Expect.Close(dInput.ToArray(), expected, GeluRtol, GeluAtol, "GeluBackward at the extremes");
    }

    [Fact]
    public void GeluBackward_accumulates_the_float64_gradient_at_every_length()
    {
        var rng = new Random(6);
        foreach (int n in Lengths())
        {
            float[] x = Uniform(rng, n, -8, 8), dOut = Uniform(rng, n), before = Uniform(rng, n);
            var dInput = Upload(before, n);
            Backend.GeluBackward(dInput, Upload(x, n), Upload(dOut, n));
            var expected = x.Select((v, i) => before[i] + Reference.GeluDerivative(v) * dOut[i]).ToArray();
            // Accumulating into values of magnitude ≤ 1 adds up to an ulp of 1 (≈1.2e-7) of absolute error.
            Expect.Close(dInput.ToArray(), expected, GeluRtol, AccumulateAtol, $"GeluBackward, n = {n}");
            // Stored rather than added: what was there (NaN here) is not read.
            var stored = Upload(Enumerable.Repeat(float.NaN, n).ToArray(), n);
            Backend.GeluBackward(stored, Upload(x, n), Upload(dOut, n), accumulate: false);
            Expect.Close(stored.ToArray(), x.Select((v, i) => Reference.GeluDerivative(v) * dOut[i]).ToArray(), GeluRtol, AccumulateAtol, $"GeluBackward stored, n = {n}");
        }
    }

    [Fact]
    public void Gelu_reference_derivative_matches_finite_differences()
    {
        var x = Expect.Widen(Uniform(new Random(7), 257, -8, 8));
        // GELU is element-wise, so perturbing every element at once gives every partial derivative.
        var fd = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            double h = 1e-5 * Math.Max(1, Math.Abs(x[i]));
            fd[i] = (Reference.Gelu(x[i] + h) - Reference.Gelu(x[i] - h)) / (2 * h);
        }
        Expect.Close(x.Select(Reference.GeluDerivative).ToArray(), fd, 1e-8, 1e-9, "GELU′ against finite differences");
    }

    /// <summary>GELU's exp carries a relative error of about |2u|·2⁻²⁴ (up to ~1e-6 for |x| ≤ 8).</summary>
    private const double GeluRtol = 2e-6, GeluAtol = 1e-12;

    /// <summary>The absolute error of accumulating into gradients of magnitude about 1: a couple of ulps of 1.</summary>
    private const double AccumulateAtol = 2.4e-7;
}

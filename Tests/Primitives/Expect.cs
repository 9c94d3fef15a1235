using Xunit;

namespace LoraRuntime.Tests.Primitives;

/// <summary>Element-wise comparisons that report the worst element.</summary>
internal static class Expect
{
    /// <summary>|actual − expected| ≤ atol + rtol·|expected| for every element (equal values, NaN included, always pass).</summary>
    public static void Close(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected, double rtol, double atol, string what) =>
        Close(Widen(actual), expected, rtol, atol, what);

    /// <summary>The same comparison between two float64 results (a reference gradient and finite differences).</summary>
    public static void Close(ReadOnlySpan<double> actual, ReadOnlySpan<double> expected, double rtol, double atol, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        int worst = -1;
        double worstRatio = 1;
        for (int i = 0; i < expected.Length; i++)
        {
            if (actual[i].Equals(expected[i])) continue;
            double ratio = Math.Abs(actual[i] - expected[i]) / (atol + rtol * Math.Abs(expected[i]));
            if (!(ratio <= worstRatio))
            {
                worstRatio = double.IsNaN(ratio) ? double.PositiveInfinity : ratio;
                worst = i;
            }
        }
        // LORA_TOLERANCE_LOG=path appends each comparison's worst error as a fraction of the allowed one, for
        // calibrating tolerances (a new backend, a new CPU).
        if (Environment.GetEnvironmentVariable("LORA_TOLERANCE_LOG") is { } log)
        {
            double max = 0;
            for (int i = 0; i < expected.Length; i++)
                if (!actual[i].Equals(expected[i])) max = Math.Max(max, Math.Abs(actual[i] - expected[i]) / (atol + rtol * Math.Abs(expected[i])));
            File.AppendAllText(log, $"{max:F4}\t{what}\n");
        }
        if (worst >= 0)
            Assert.Fail($"{what}: element {worst} of {expected.Length} is {actual[worst]:R}, expected {expected[worst]:R} " +
                $"(error {Math.Abs(actual[worst] - expected[worst]):E2}, allowed {atol:E1} + {rtol:E1}·|expected|)");
    }

    /// <summary>The values as float64.</summary>
    public static double[] Widen(ReadOnlySpan<float> values)
    {
        var result = new double[values.Length];
        for (int i = 0; i < values.Length; i++) result[i] = values[i];
        return result;
    }

    /// <summary>
    /// The gradient of <paramref name="loss"/> at <paramref name="x"/> by central differences in float64, with a
    /// step of 1e-5 relative to each element (truncation ~1e-10, rounding ~1e-11).
    /// </summary>
    public static double[] FiniteDifferences(Func<double[], double> loss, double[] x)
    {
        var gradient = new double[x.Length];
        var probe = (double[])x.Clone();
        for (int i = 0; i < x.Length; i++)
        {
            double h = 1e-5 * Math.Max(1, Math.Abs(x[i]));
            probe[i] = x[i] + h;
            double up = loss(probe);
            probe[i] = x[i] - h;
            double down = loss(probe);
            probe[i] = x[i];
            gradient[i] = (up - down) / (2 * h);
        }
        return gradient;
    }

    /// <summary>Σ weights ⊙ values: the scalar whose gradient a backward pass computes.</summary>
    public static double Dot(double[] weights, double[] values)
    {
        double sum = 0;
        for (int i = 0; i < values.Length; i++) sum += weights[i] * values[i];
        return sum;
    }
}

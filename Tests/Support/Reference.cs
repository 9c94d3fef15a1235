namespace LoraRuntime.Tests.Support;

/// <summary>Float64 references and comparisons shared by the conformance suites.</summary>
public static class Reference
{
    /// <summary>C = α·op(A)·op(B) + β·C in float64 over row-major storage with leading dimensions and offsets.</summary>
    public static void Gemm(bool transA, bool transB, int m, int n, int k, double alpha,
        ReadOnlySpan<float> a, long offA, int lda, ReadOnlySpan<float> b, long offB, int ldb, double beta,
        Span<double> c, long offC, int ldc)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++)
                {
                    double av = transA ? a[(int)(offA + (long)p * lda + i)] : a[(int)(offA + (long)i * lda + p)];
                    double bv = transB ? b[(int)(offB + (long)j * ldb + p)] : b[(int)(offB + (long)p * ldb + j)];
                    s += av * bv;
                }
                ref double cij = ref c[(int)(offC + (long)i * ldc + j)];
                cij = beta == 0 ? alpha * s : alpha * s + beta * cij;
            }
    }

    /// <summary>‖actual − expected‖₂ / ‖expected‖₂ (absolute norm when the reference is zero).</summary>
    public static double RelativeError(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected)
    {
        if (actual.Length != expected.Length) throw new ArgumentException("length mismatch");
        double num = 0, den = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double d = actual[i] - expected[i];
            num += d * d;
            den += expected[i] * expected[i];
        }
        return den == 0 ? Math.Sqrt(num) : Math.Sqrt(num / den);
    }

    /// <summary>Uniform values in [-1, 1) from a seeded generator.</summary>
    public static float[] Random(int length, int seed)
    {
        var rng = new System.Random(seed);
        var x = new float[length];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }

    public static double[] ToDouble(ReadOnlySpan<float> x)
    {
        var d = new double[x.Length];
        for (int i = 0; i < x.Length; i++) d[i] = x[i];
        return d;
    }
}

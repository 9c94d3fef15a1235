namespace LoraRuntime.Tests.Linalg;

/// <summary>
/// Float64 references for the linear-algebra suites: singular values by one-sided (Hestenes) Jacobi, which has high
/// relative accuracy and no dependence on the code under test; matrices with prescribed singular values; and the
/// residual norms the suites check. Matrices are row-major float32 [m, n] as the library stores them.
/// </summary>
internal static class LinalgReference
{
    /// <summary>The singular values of the m×n matrix, descending, by one-sided Jacobi on its taller orientation.</summary>
    public static double[] SingularValues(float[] a, int m, int n) => SingularValues(Array.ConvertAll(a, x => (double)x), m, n);

    /// <summary>
    /// The singular values of the row-major float64 m×n matrix, descending. With <paramref name="noiseFloor"/>, columns
    /// below 1e-13 of the largest are left alone (see below); without it only those below 1e-35 are, so that values down to
    /// there keep their relative accuracy, for matrices whose tiny values are exact (graded bidiagonals) rather than
    /// rounding noise.
    /// </summary>
    public static double[] SingularValues(double[] a, int m, int n, bool noiseFloor = true)
    {
        bool tall = m >= n;
        int rows = tall ? m : n, cols = tall ? n : m;
        // Column j of W is column j of A (tall) or row j of A (wide), contiguous.
        var w = new double[cols][];
        for (int j = 0; j < cols; j++)
        {
            w[j] = new double[rows];
            for (int i = 0; i < rows; i++) w[j][i] = tall ? a[i * n + j] : a[j * n + i];
        }
        // Columns below 1e-13 of the largest are rounding noise of zero singular values: rotating them among
        // themselves never settles, and the suites compare only values ≥ 1e-4·σ₁.
        double floor = 0;
        for (int j = 0; j < cols; j++) floor = Math.Max(floor, Dot(w[j], w[j]));
        floor *= noiseFloor ? 1e-26 : 1e-70;
        for (int sweep = 0; ; sweep++)
        {
            if (sweep == 60) throw new InvalidOperationException("the Jacobi reference did not converge in 60 sweeps");
            bool rotated = false;
            for (int p = 0; p < cols - 1; p++)
                for (int q = p + 1; q < cols; q++)
                {
                    double alpha = Dot(w[p], w[p]), beta = Dot(w[q], w[q]), gamma = Dot(w[p], w[q]);
                    // Rounding leaves |γ| about rows·ε·√(αβ) after a rotation: stop there, not at a bound it cannot reach.
                    if (alpha <= floor || beta <= floor || gamma == 0 || Math.Abs(gamma) <= Math.Max(rows, 10) * 1.2e-16 * Math.Sqrt(alpha * beta)) continue;
                    rotated = true;
                    double zeta = (beta - alpha) / (2 * gamma);
                    double t = Math.Sign(zeta == 0 ? 1 : zeta) / (Math.Abs(zeta) + Math.Sqrt(1 + zeta * zeta));
                    double c = 1 / Math.Sqrt(1 + t * t), s = c * t;
                    for (int i = 0; i < rows; i++)
                    {
                        double x = w[p][i], y = w[q][i];
                        w[p][i] = c * x - s * y;
                        w[q][i] = s * x + c * y;
                    }
                }
            if (!rotated) break;
        }
        var sigma = new double[cols];
        for (int j = 0; j < cols; j++) sigma[j] = Math.Sqrt(Dot(w[j], w[j]));
        Array.Sort(sigma, (x, y) => y.CompareTo(x));
        return sigma;
    }

    /// <summary>U·diag(s)·Vᵀ rounded to float32, with U (m×k) and V (n×k) orthonormal from seeded Gaussians (k = s.Length).</summary>
    public static float[] WithSingularValues(int m, int n, double[] s, int seed)
    {
        int k = s.Length;
        var rng = new Random(seed);
        double[][] u = Orthonormal(m, k, rng), v = Orthonormal(n, k, rng);
        var a = new float[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = 0;
                for (int t = 0; t < k; t++) sum += u[t][i] * s[t] * v[t][j];
                a[i * n + j] = (float)sum;
            }
        return a;
    }

    /// <summary>k orthonormal vectors of length n (k ≤ n): Gaussian columns through Gram–Schmidt, twice.</summary>
    public static double[][] Orthonormal(int n, int k, Random rng)
    {
        var q = new double[k][];
        for (int j = 0; j < k; j++)
        {
            q[j] = new double[n];
            for (int i = 0; i < n; i++) q[j][i] = Gaussian(rng);
            for (int pass = 0; pass < 2; pass++)
                for (int p = 0; p < j; p++)
                {
                    double d = Dot(q[p], q[j]);
                    for (int i = 0; i < n; i++) q[j][i] -= d * q[p][i];
                }
            double norm = Math.Sqrt(Dot(q[j], q[j]));
            for (int i = 0; i < n; i++) q[j][i] /= norm;
        }
        return q;
    }

    /// <summary>‖A − U·diag(S)·Vt‖_F / ‖A‖_F in float64 (the absolute norm when A is zero).</summary>
    public static double ReconstructionError(float[] a, int m, int n, float[] u, float[] s, float[] vt)
    {
        int k = s.Length;
        var scaled = new double[u.Length];
        for (int i = 0; i < m; i++)
            for (int t = 0; t < k; t++) scaled[i * k + t] = (double)u[i * k + t] * s[t];
        return ProductError(a, m, n, scaled, Array.ConvertAll(vt, x => (double)x), k);
    }

    /// <summary>‖A − Q·R‖_F / ‖A‖_F for Q [m, k] and R [k, n] (the absolute norm when A is zero).</summary>
    public static double ProductError(float[] a, int m, int n, float[] q, float[] r, int k) =>
        ProductError(a, m, n, Array.ConvertAll(q, x => (double)x), Array.ConvertAll(r, x => (double)x), k);

    /// <summary>‖A − L·R‖_F / ‖A‖_F for float64 factors L [m, k] and R [k, n].</summary>
    public static double ProductError(float[] a, int m, int n, double[] q, double[] r, int k)
    {
        double num = 0, den = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = 0;
                for (int t = 0; t < k; t++) sum += q[i * k + t] * r[t * n + j];
                double diff = a[i * n + j] - sum;
                num += diff * diff;
                den += (double)a[i * n + j] * a[i * n + j];
            }
        return den == 0 ? Math.Sqrt(num) : Math.Sqrt(num / den);
    }

    /// <summary>‖XᵀX − I‖_F for the columns of the row-major rows×cols X.</summary>
    public static double ColumnOrthogonality(float[] x, int rows, int cols)
    {
        double sum = 0;
        for (int p = 0; p < cols; p++)
            for (int q = 0; q < cols; q++)
            {
                double d = 0;
                for (int i = 0; i < rows; i++) d += (double)x[i * cols + p] * x[i * cols + q];
                d -= p == q ? 1 : 0;
                sum += d * d;
            }
        return Math.Sqrt(sum);
    }

    /// <summary>‖XXᵀ − I‖_F for the rows of the row-major rows×cols X.</summary>
    public static double RowOrthogonality(float[] x, int rows, int cols)
    {
        double sum = 0;
        for (int p = 0; p < rows; p++)
            for (int q = 0; q < rows; q++)
            {
                double d = 0;
                for (int j = 0; j < cols; j++) d += (double)x[p * cols + j] * x[q * cols + j];
                d -= p == q ? 1 : 0;
                sum += d * d;
            }
        return Math.Sqrt(sum);
    }

    public static double Gaussian(Random rng) =>
        Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());

    public static float[] GaussianMatrix(int m, int n, int seed)
    {
        var rng = new Random(seed);
        var a = new float[m * n];
        for (int i = 0; i < a.Length; i++) a[i] = (float)Gaussian(rng);
        return a;
    }

    private static double Dot(double[] x, double[] y)
    {
        double s = 0;
        for (int i = 0; i < x.Length; i++) s += x[i] * y[i];
        return s;
    }
}

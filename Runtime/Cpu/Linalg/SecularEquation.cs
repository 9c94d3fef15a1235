using System.Runtime.CompilerServices;

namespace LoraRuntime.Cpu.Linalg;

/// <summary>
/// The roots of the secular equation of a divide-and-conquer merge, f(λ) = 1 + Σ_j z_j² / (d_j² − λ) = 0 with poles
/// 0 = d_0 &lt; d_1 &lt; … &lt; d_{K−1} and every z_j ≠ 0: root i is σ_i² with d_i &lt; σ_i &lt; d_{i+1} (σ_{K−1} &lt;
/// √(d_{K−1}² + ‖z‖²)). Each root is found relative to its nearer pole (its origin o), σ_i = d_o + τ_i, so that the
/// differences d_j − σ_i = (d_j − d_o) − τ_i the singular vectors are built from keep full relative accuracy
/// (Gu and Eisenstat, 1995). The iteration is Li's "middle way": ψ (the poles at or left of the root) and φ (those
/// right of it) are each modelled by one pole plus a constant matching value and slope, and the model's root taken;
/// a bisection step keeps it inside the bracket the signs of f maintain.
/// </summary>
internal static unsafe class SecularEquation
{
    /// <summary>The iteration limit per root (LAPACK's lasd4 uses the same).</summary>
    public const int MaxIterations = 400;
    private const double Eps = 1.1102230246251565e-16;

    /// <summary>
    /// Root <paramref name="i"/> of K: returns τ with σ_i = d[origin] + τ. <paramref name="delta"/> holds K doubles of
    /// scratch (the poles d_j² − d_o², shifted to the origin). <paramref name="maxIterations"/> is for tests.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double Solve(int k, double* d, double* z, int i, double* delta, out int origin, int maxIterations = MaxIterations)
    {
        double lo, hi, mu;
        if (i < k - 1)
        {
            // The midpoint of (d_i², d_{i+1}²) decides which pole is nearer: f increases across the interval.
            double gap = (d[i + 1] - d[i]) * (d[i + 1] + d[i]);
            double f = 1;
            for (int j = 0; j < k; j++) f += z[j] * z[j] / ((d[j] - d[i]) * (d[j] + d[i]) - gap / 2);
            if (f > 0)
            {
                origin = i; lo = 0; hi = gap / 2; mu = hi;
            }
            else
            {
                origin = i + 1; lo = -gap / 2; hi = 0; mu = lo;
            }
        }
        else
        {
            origin = k - 1;
            double norm2 = 0;
            for (int j = 0; j < k; j++) norm2 += z[j] * z[j];
            lo = 0; hi = norm2; mu = hi;
        }
        double dOrigin = d[origin];
        for (int j = 0; j < k; j++) delta[j] = (d[j] - dOrigin) * (d[j] + dOrigin);
        double deltaLeft = delta[i], deltaRight = i + 1 < k ? delta[i + 1] : double.PositiveInfinity;

        for (int iteration = 0; ; iteration++)
        {
            if (iteration == maxIterations)
                throw new NoConvergenceException(
                    $"the secular equation of a divide-and-conquer SVD merge (root {i} of {k}) did not converge in {maxIterations} iterations");
            double psi = 0, dpsi = 0, phi = 0, dphi = 0;
            for (int j = 0; j <= i; j++)
            {
                double t = z[j] / (delta[j] - mu);
                psi += z[j] * t;
                dpsi += t * t;
            }
            for (int j = i + 1; j < k; j++)
            {
                double t = z[j] / (delta[j] - mu);
                phi += z[j] * t;
                dphi += t * t;
            }
            double f = 1 + psi + phi;
            if (Math.Abs(f) <= Eps * (8 * (1 + Math.Abs(psi) + Math.Abs(phi)) + 3 * Math.Abs(mu) * (dpsi + dphi))) break;
            if (f < 0) lo = Math.Max(lo, mu);
            else hi = Math.Min(hi, mu);

            double next = ModelRoot(psi, dpsi, phi, dphi, mu, deltaLeft, deltaRight, origin == i);
            if (!(next > lo && next < hi)) next = lo + (hi - lo) / 2;
            bool tiny = Math.Abs(next - mu) <= 2 * Eps * Math.Abs(next) || hi - lo <= 2 * Eps * Math.Max(Math.Abs(lo), Math.Abs(hi));
            mu = next;
            if (tiny) break;
        }
        // σ − d_o = μ / (σ + d_o) without cancellation (μ = σ² − d_o²).
        return mu / (Math.Sqrt(dOrigin * dOrigin + mu) + dOrigin);
    }

    /// <summary>
    /// The root in (δ_L, δ_R) of the model c + W_L/(δ_L − x) + W_R/(δ_R − x), where each side matches ψ or φ and its
    /// slope at μ. One of δ_L, δ_R is the origin (0); the root is taken in the form that does not cancel near it.
    /// </summary>
    private static double ModelRoot(double psi, double dpsi, double phi, double dphi, double mu, double deltaLeft, double deltaRight,
        bool originLeft)
    {
        double wl = dpsi * (deltaLeft - mu) * (deltaLeft - mu);
        double c = 1 + psi - dpsi * (deltaLeft - mu);
        if (double.IsPositiveInfinity(deltaRight))
            return c > 0 ? deltaLeft + wl / c : double.NaN; // the last root: no pole on the right, φ = 0
        double wr = dphi * (deltaRight - mu) * (deltaRight - mu);
        c += phi - dphi * (deltaRight - mu);
        if (originLeft)
        {
            // δ_L = 0, δ_R = g: c·x² − (c·g + W_L + W_R)·x + W_L·g = 0; the root in (0, g) is the small one.
            double g = deltaRight, b = c * g + wl + wr;
            double disc = Math.Max(0, b * b - 4 * c * wl * g);
            return 2 * wl * g / (b + Math.Sqrt(disc));
        }
        else
        {
            // δ_L = −g, δ_R = 0: c·x² − (W_L + W_R − c·g)·x − W_R·g = 0; the root in (−g, 0) is the small one.
            double g = -deltaLeft, b = wl + wr - c * g;
            double disc = Math.Max(0, b * b + 4 * c * wr * g);
            return -2 * wr * g / (b + Math.Sqrt(disc));
        }
    }

    /// <summary>
    /// Löwner's formula for entry j: the ẑ_j for which the computed σ are the exact singular values (Gu and Eisenstat),
    /// so that the vectors built from ẑ are orthogonal to working precision. ẑ_j takes z_j's sign. The product pairs each
    /// σ_i² − d_j² with a neighbouring pole's d² − d_j² so that every factor stays near 1.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double RecomputeZ(int k, double* d, double* z, int* origin, double* tau, int j)
    {
        double dj = d[j];
        // σ_i² − d_j² = ((d_o − d_j) + τ_i)·(σ_i + d_j)
        double product = SigmaSquaredMinus(k - 1, dj, d, origin, tau);
        for (int i = 0; i < j; i++)
            product *= SigmaSquaredMinus(i, dj, d, origin, tau) / ((d[i] - dj) * (d[i] + dj));
        for (int i = j; i < k - 1; i++)
            product *= SigmaSquaredMinus(i, dj, d, origin, tau) / ((d[i + 1] - dj) * (d[i + 1] + dj));
        return Math.CopySign(Math.Sqrt(Math.Abs(product)), z[j]);
    }

    /// <summary>σ_i − d_j, accurate: (d_o − d_j) + τ_i.</summary>
    public static double SigmaMinus(int i, double dj, double* d, int* origin, double* tau) => d[origin[i]] - dj + tau[i];

    private static double SigmaSquaredMinus(int i, double dj, double* d, int* origin, double* tau)
    {
        double sigma = d[origin[i]] + tau[i];
        return SigmaMinus(i, dj, d, origin, tau) * (sigma + dj);
    }
}

using System.Runtime.CompilerServices;

namespace LoraRuntime.Cpu.Linalg;

/// <summary>
/// The SVD of an upper bidiagonal matrix by implicit-shift QR (Demmel–Kahan, as in LAPACK's bdsqr): sweeps chase a
/// bulge down (or up) the active block with a Wilkinson-like shift, or with no shift when that keeps the small
/// singular values to full relative accuracy; converged values split off the ends. Each sweep's rotations are applied
/// to the columns of U and V afterwards. Iterations are capped at <see cref="SweepsPerValue"/>·n² rotations' worth of
/// block lengths, after which it throws rather than spins.
/// </summary>
internal static unsafe class BidiagonalQr
{
    /// <summary>LAPACK's MAXITR: the iteration budget is this many times n² (in units of the active block length).</summary>
    public const int SweepsPerValue = 6;
    private const double Eps = 1.1102230246251565e-16;

    /// <summary>
    /// B = U·diag(d)·Vᵀ for the n×n upper bidiagonal B with diagonal d and superdiagonal e (both overwritten): on return
    /// d holds the singular values, nonnegative and descending, and the columns of U (nru × n) and V (nrv × n), both
    /// column-major, have been rotated and permuted to match (start them as identities for B's own vectors).
    /// <paramref name="work"/> holds 4n doubles. <paramref name="iterationLimit"/> overrides the budget (tests).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Solve(int n, double* d, double* e, double* u, int nru, int ldu, double* v, int nrv, int ldv, double* work,
        long iterationLimit = -1)
    {
        if (n == 0) return;
        double* cv = work, sv = work + n, cu = work + 2 * n, su = work + 3 * n;
        double tol = Math.Max(10, Math.Min(100, Math.Pow(Eps, -0.125))) * Eps;
        double thresh = Threshold(n, d, e, tol);
        long maxIterations = iterationLimit >= 0 ? iterationLimit : (long)SweepsPerValue * n * n;
        long iterations = 0;
        int oldLl = -1, oldM = -1, direction = 0;
        int m = n - 1;
        while (m > 0)
        {
            if (iterations > maxIterations)
                throw new NoConvergenceException(
                    $"bidiagonal QR did not converge within {maxIterations} iterations on a {n}×{n} bidiagonal ({m + 1} values left)");
            // The bottom unreduced block is ll..m: e[ll − 1] is negligible (or ll = 0).
            double smax = Math.Abs(d[m]);
            int ll = 0;
            bool split = false;
            for (int i = m - 1; i >= 0; i--)
            {
                double absD = Math.Abs(d[i]), absE = Math.Abs(e[i]);
                if (absE <= thresh)
                {
                    e[i] = 0;
                    ll = i + 1;
                    split = true;
                    break;
                }
                smax = Math.Max(smax, Math.Max(absD, absE));
            }
            if (split && ll == m)
            {
                m--;
                continue;
            }
            if (ll == m - 1)
            {
                PlaneRotations.Svd2x2(d[m - 1], e[m - 1], d[m], out double sigmaMin, out double sigmaMax,
                    out double sinR, out double cosR, out double sinL, out double cosL);
                d[m - 1] = sigmaMax;
                e[m - 1] = 0;
                d[m] = sigmaMin;
                PlaneRotations.Rotate(v + (nint)(m - 1) * ldv, v + (nint)m * ldv, nrv, cosR, sinR);
                PlaneRotations.Rotate(u + (nint)(m - 1) * ldu, u + (nint)m * ldu, nru, cosL, sinL);
                m -= 2;
                continue;
            }
            // A new block: chase towards the smaller end.
            if (ll > oldM || m < oldLl)
                direction = Math.Abs(d[ll]) >= Math.Abs(d[m]) ? 1 : 2;
            if (Converged(d, e, ll, m, direction, tol, out double sminl)) continue;
            oldLl = ll;
            oldM = m;
            double shift = 0;
            if (n * tol * (sminl / smax) > Math.Max(Eps, 0.01 * tol))
            {
                double sll = direction == 1 ? Math.Abs(d[ll]) : Math.Abs(d[m]);
                shift = direction == 1
                    ? PlaneRotations.SmallerSingularValue(d[m - 1], e[m - 1], d[m])
                    : PlaneRotations.SmallerSingularValue(d[ll], e[ll], d[ll + 1]);
                if (sll > 0 && (shift / sll) * (shift / sll) < Eps) shift = 0;
            }
            iterations += m - ll;
            int count = m - ll;
            if (direction == 1)
            {
                if (shift == 0) ZeroShiftDown(d, e, ll, m, cv, sv, cu, su);
                else ShiftedDown(d, e, ll, m, shift, cv, sv, cu, su);
                PlaneRotations.ApplyToColumns(v, nrv, ldv, ll, count, cv, sv, false);
                PlaneRotations.ApplyToColumns(u, nru, ldu, ll, count, cu, su, false);
                if (Math.Abs(e[m - 1]) <= thresh) e[m - 1] = 0;
            }
            else
            {
                if (shift == 0) ZeroShiftUp(d, e, ll, m, cv, sv, cu, su);
                else ShiftedUp(d, e, ll, m, shift, cv, sv, cu, su);
                PlaneRotations.ApplyToColumns(v, nrv, ldv, ll, count, cv, sv, true);
                PlaneRotations.ApplyToColumns(u, nru, ldu, ll, count, cu, su, true);
                if (Math.Abs(e[ll]) <= thresh) e[ll] = 0;
            }
        }
        SortDescending(n, d, u, nru, ldu, v, nrv, ldv);
    }

    /// <summary>
    /// The absolute threshold below which an off-diagonal is zeroed: tol times an estimate of the smallest singular
    /// value (so that relative accuracy is kept), with a floor far below anything float32 data produces.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double Threshold(int n, double* d, double* e, double tol)
    {
        double sminoa = Math.Abs(d[0]);
        if (sminoa != 0)
        {
            double mu = sminoa;
            for (int i = 1; i < n; i++)
            {
                mu = Math.Abs(d[i]) * (mu / (mu + Math.Abs(e[i - 1])));
                sminoa = Math.Min(sminoa, mu);
                if (sminoa == 0) break;
            }
        }
        sminoa /= Math.Sqrt(n);
        return Math.Max(tol * sminoa, SweepsPerValue * (n * (n * 2.2250738585072014e-308)));
    }

    /// <summary>
    /// The relative convergence tests of the block ll..m in the chasing direction: a negligible off-diagonal is zeroed
    /// and true returned (the caller looks for blocks again); otherwise sminl estimates the block's smallest value.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool Converged(double* d, double* e, int ll, int m, int direction, double tol, out double sminl)
    {
        double mu;
        if (direction == 1)
        {
            sminl = 0;
            if (Math.Abs(e[m - 1]) <= tol * Math.Abs(d[m]))
            {
                e[m - 1] = 0;
                return true;
            }
            mu = Math.Abs(d[ll]);
            sminl = mu;
            for (int i = ll; i < m; i++)
            {
                if (Math.Abs(e[i]) <= tol * mu)
                {
                    e[i] = 0;
                    return true;
                }
                mu = Math.Abs(d[i + 1]) * (mu / (mu + Math.Abs(e[i])));
                sminl = Math.Min(sminl, mu);
            }
            return false;
        }
        sminl = 0;
        if (Math.Abs(e[ll]) <= tol * Math.Abs(d[ll]))
        {
            e[ll] = 0;
            return true;
        }
        mu = Math.Abs(d[m]);
        sminl = mu;
        for (int i = m - 1; i >= ll; i--)
        {
            if (Math.Abs(e[i]) <= tol * mu)
            {
                e[i] = 0;
                return true;
            }
            mu = Math.Abs(d[i]) * (mu / (mu + Math.Abs(e[i])));
            sminl = Math.Min(sminl, mu);
        }
        return false;
    }

    // The four sweeps. Rotation t of a sweep acts on columns (ll + t, ll + t + 1): (cv, sv) on V, (cu, su) on U.

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ZeroShiftDown(double* d, double* e, int ll, int m, double* cv, double* sv, double* cu, double* su)
    {
        double cs = 1, oldCs = 1, oldSn = 0;
        for (int i = ll; i < m; i++)
        {
            double r = PlaneRotations.Generate(d[i] * cs, e[i], out cs, out double sn);
            if (i > ll) e[i - 1] = oldSn * r;
            d[i] = PlaneRotations.Generate(oldCs * r, d[i + 1] * sn, out oldCs, out oldSn);
            cv[i - ll] = cs; sv[i - ll] = sn; cu[i - ll] = oldCs; su[i - ll] = oldSn;
        }
        double h = d[m] * cs;
        d[m] = h * oldCs;
        e[m - 1] = h * oldSn;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ZeroShiftUp(double* d, double* e, int ll, int m, double* cv, double* sv, double* cu, double* su)
    {
        double cs = 1, oldCs = 1, oldSn = 0;
        for (int i = m; i > ll; i--)
        {
            double r = PlaneRotations.Generate(d[i] * cs, e[i - 1], out cs, out double sn);
            if (i < m) e[i] = oldSn * r;
            d[i] = PlaneRotations.Generate(oldCs * r, d[i - 1] * sn, out oldCs, out oldSn);
            int t = i - 1 - ll;
            cu[t] = cs; su[t] = -sn; cv[t] = oldCs; sv[t] = -oldSn;
        }
        double h = d[ll] * cs;
        d[ll] = h * oldCs;
        e[ll] = h * oldSn;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ShiftedDown(double* d, double* e, int ll, int m, double shift, double* cv, double* sv, double* cu, double* su)
    {
        double f = (Math.Abs(d[ll]) - shift) * (Math.CopySign(1, d[ll]) + shift / d[ll]);
        double g = e[ll];
        for (int i = ll; i < m; i++)
        {
            double r = PlaneRotations.Generate(f, g, out double cosR, out double sinR);
            if (i > ll) e[i - 1] = r;
            f = cosR * d[i] + sinR * e[i];
            e[i] = cosR * e[i] - sinR * d[i];
            g = sinR * d[i + 1];
            d[i + 1] = cosR * d[i + 1];
            d[i] = PlaneRotations.Generate(f, g, out double cosL, out double sinL);
            f = cosL * e[i] + sinL * d[i + 1];
            d[i + 1] = cosL * d[i + 1] - sinL * e[i];
            if (i < m - 1)
            {
                g = sinL * e[i + 1];
                e[i + 1] = cosL * e[i + 1];
            }
            cv[i - ll] = cosR; sv[i - ll] = sinR; cu[i - ll] = cosL; su[i - ll] = sinL;
        }
        e[m - 1] = f;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ShiftedUp(double* d, double* e, int ll, int m, double shift, double* cv, double* sv, double* cu, double* su)
    {
        double f = (Math.Abs(d[m]) - shift) * (Math.CopySign(1, d[m]) + shift / d[m]);
        double g = e[m - 1];
        for (int i = m; i > ll; i--)
        {
            double r = PlaneRotations.Generate(f, g, out double cosR, out double sinR);
            if (i < m) e[i] = r;
            f = cosR * d[i] + sinR * e[i - 1];
            e[i - 1] = cosR * e[i - 1] - sinR * d[i];
            g = sinR * d[i - 1];
            d[i - 1] = cosR * d[i - 1];
            d[i] = PlaneRotations.Generate(f, g, out double cosL, out double sinL);
            f = cosL * e[i - 1] + sinL * d[i - 1];
            d[i - 1] = cosL * d[i - 1] - sinL * e[i - 1];
            if (i > ll + 1)
            {
                g = sinL * e[i - 2];
                e[i - 2] = cosL * e[i - 2];
            }
            int t = i - 1 - ll;
            cu[t] = cosR; su[t] = -sinR; cv[t] = cosL; sv[t] = -sinL;
        }
        e[ll] = f;
    }

    /// <summary>Makes every value nonnegative (flipping V's column) and sorts descending (swapping columns of U and V).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SortDescending(int n, double* d, double* u, int nru, int ldu, double* v, int nrv, int ldv)
    {
        for (int i = 0; i < n; i++)
        {
            if (d[i] >= 0) continue;
            d[i] = -d[i];
            double* vi = v + (nint)i * ldv;
            for (int r = 0; r < nrv; r++) vi[r] = -vi[r];
        }
        for (int i = 0; i < n - 1; i++)
        {
            int best = i;
            for (int j = i + 1; j < n; j++)
                if (d[j] > d[best]) best = j;
            if (best == i) continue;
            (d[i], d[best]) = (d[best], d[i]);
            SwapColumns(u, nru, ldu, i, best);
            SwapColumns(v, nrv, ldv, i, best);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SwapColumns(double* a, int rows, int lda, int i, int j)
    {
        double* x = a + (nint)i * lda, y = a + (nint)j * lda;
        for (int r = 0; r < rows; r++) (x[r], y[r]) = (y[r], x[r]);
    }
}

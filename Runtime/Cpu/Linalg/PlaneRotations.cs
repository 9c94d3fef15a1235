using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace LoraRuntime.Cpu.Linalg;

/// <summary>
/// Plane rotations and the 2×2 singular value problems of the bidiagonal QR iteration. A rotation (c, s) maps a
/// pair of columns (x, y) to (c·x + s·y, −s·x + c·y).
/// </summary>
internal static unsafe class PlaneRotations
{
    /// <summary>(c, s, r) with c·f + s·g = r and −s·f + c·g = 0, r taking f's sign (LAPACK's lartg).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Generate(double f, double g, out double c, out double s)
    {
        if (g == 0)
        {
            c = 1; s = 0;
            return f;
        }
        if (f == 0)
        {
            c = 0; s = Math.Sign(g);
            return Math.Abs(g);
        }
        double norm = Math.Sqrt(f * f + g * g);
        double r = Math.CopySign(norm, f);
        c = Math.Abs(f) / norm;
        s = g / r;
        return r;
    }

    /// <summary>
    /// Applies <paramref name="count"/> rotations to consecutive column pairs of a column-major matrix: rotation t acts
    /// on columns (first + t, first + t + 1), in the order t = 0, 1, … or, when <paramref name="backward"/>, the reverse.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ApplyToColumns(double* a, int rows, int lda, int first, int count, double* c, double* s, bool backward)
    {
        if (rows == 0) return;
        for (int step = 0; step < count; step++)
        {
            int t = backward ? count - 1 - step : step;
            if (c[t] == 1 && s[t] == 0) continue;
            Rotate(a + (nint)(first + t) * lda, a + (nint)(first + t + 1) * lda, rows, c[t], s[t]);
        }
    }

    /// <summary>(x, y) ← (c·x + s·y, −s·x + c·y) over n elements.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rotate(double* x, double* y, int n, double c, double s)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var vc = Vector256.Create(c);
            var vs = Vector256.Create(s);
            for (; i + 4 <= n; i += 4)
            {
                var xv = Vector256.Load(x + i);
                var yv = Vector256.Load(y + i);
                Vector256.Store(vc * xv + vs * yv, x + i);
                Vector256.Store(vc * yv - vs * xv, y + i);
            }
        }
        for (; i < n; i++)
        {
            double xi = x[i], yi = y[i];
            x[i] = c * xi + s * yi;
            y[i] = c * yi - s * xi;
        }
    }

    /// <summary>The smaller singular value of the upper triangular [f g; 0 h] (LAPACK's las2), accurate to a few ulps.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double SmallerSingularValue(double f, double g, double h)
    {
        double fa = Math.Abs(f), ga = Math.Abs(g), ha = Math.Abs(h);
        double fhmin = Math.Min(fa, ha), fhmax = Math.Max(fa, ha);
        if (fhmin == 0) return 0;
        if (ga < fhmax)
        {
            double sum = 1 + fhmin / fhmax, diff = (fhmax - fhmin) / fhmax, g2 = (ga / fhmax) * (ga / fhmax);
            double c = 2 / (Math.Sqrt(sum * sum + g2) + Math.Sqrt(diff * diff + g2));
            return fhmin * c;
        }
        double ratio = fhmax / ga;
        if (ratio == 0) return fhmin * fhmax / ga;
        double sumR = (1 + fhmin / fhmax) * ratio, diffR = ((fhmax - fhmin) / fhmax) * ratio;
        double c2 = 1 / (Math.Sqrt(1 + sumR * sumR) + Math.Sqrt(1 + diffR * diffR));
        return 2 * (fhmin * c2) * ratio;
    }

    /// <summary>
    /// The SVD of the upper triangular [f g; 0 h] (LAPACK's lasv2, after Demmel and Kahan):
    /// [cl sl; −sl cl]·[f g; 0 h]·[cr −sr; sr cr] = [σmax 0; 0 σmin], |σmax| ≥ |σmin|, each singular value accurate to
    /// a few ulps of itself (the small one too).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Svd2x2(double f, double g, double h, out double sigmaMin, out double sigmaMax,
        out double sinR, out double cosR, out double sinL, out double cosL)
    {
        const double eps = 1.1102230246251565e-16;
        double ft = f, fa = Math.Abs(f), ht = h, ha = Math.Abs(h);
        int largest = 1; // which of f (1), g (2), h (3) has the largest magnitude
        bool swap = ha > fa;
        if (swap)
        {
            largest = 3;
            (ft, ht) = (ht, ft);
            (fa, ha) = (ha, fa);
        }
        double gt = g, ga = Math.Abs(g);
        double clt, slt, crt, srt, ssmin, ssmax;
        if (ga == 0)
        {
            ssmin = ha; ssmax = fa;
            clt = 1; crt = 1; slt = 0; srt = 0;
        }
        else
        {
            bool gSmall = true;
            ssmin = ssmax = clt = slt = crt = srt = 0;
            if (ga > fa)
            {
                largest = 2;
                if (fa / ga < eps)
                {
                    // g dominates so strongly that the formulas below would lose it.
                    gSmall = false;
                    ssmax = ga;
                    ssmin = ha > 1 ? fa / (ga / ha) : fa / ga * ha;
                    clt = 1;
                    slt = ht / gt;
                    srt = 1;
                    crt = ft / gt;
                }
            }
            if (gSmall)
            {
                double dd = fa - ha;
                double l = dd == fa ? 1 : dd / fa;
                double mq = gt / ft, t = 2 - l, mm = mq * mq, tt = t * t;
                double s = Math.Sqrt(tt + mm);
                double r = l == 0 ? Math.Abs(mq) : Math.Sqrt(l * l + mm);
                double aa = 0.5 * (s + r);
                ssmin = ha / aa;
                ssmax = fa * aa;
                if (mm == 0)
                    t = l == 0 ? Math.CopySign(2, ft) * Math.CopySign(1, gt) : gt / Math.CopySign(dd, ft) + mq / t;
                else
                    t = (mq / (s + t) + mq / (r + l)) * (1 + aa);
                l = Math.Sqrt(t * t + 4);
                crt = 2 / l;
                srt = t / l;
                clt = (crt + srt * mq) / aa;
                slt = ht / ft * srt / aa;
            }
        }
        if (swap)
        {
            cosL = srt; sinL = crt; cosR = slt; sinR = clt;
        }
        else
        {
            cosL = clt; sinL = slt; cosR = crt; sinR = srt;
        }
        double sign = largest switch
        {
            1 => Math.CopySign(1, cosR) * Math.CopySign(1, cosL) * Math.CopySign(1, f),
            2 => Math.CopySign(1, sinR) * Math.CopySign(1, cosL) * Math.CopySign(1, g),
            _ => Math.CopySign(1, sinR) * Math.CopySign(1, sinL) * Math.CopySign(1, h),
        };
        sigmaMax = Math.CopySign(ssmax, sign);
        sigmaMin = Math.CopySign(ssmin, sign * Math.CopySign(1, f) * Math.CopySign(1, h));
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using LoraRuntime.Cpu.Linalg;

namespace LoraRuntime.Cpu;

// The cores of QR, SVD and truncated SVD. Each works in float64 on column-major copies (see Cpu/Linalg), with all
// scratch from one LinalgContext whose memory comes from this backend's pool and goes back when the call ends.
public sealed unsafe partial class CpuBackend
{
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override long FindNonFiniteCore(Tensor tensor, out float value)
    {
        float* data = F(tensor);
        long count = tensor.Length, i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            // x − x is 0 for a finite x and NaN for NaN or ±infinity.
            for (; i + 8 <= count; i += 8)
            {
                var x = Vector256.Load(data + i);
                if (!Vector256.EqualsAll(x - x, Vector256<float>.Zero)) break;
            }
        }
        for (; i < count; i++)
        {
            if (!float.IsFinite(data[i]))
            {
                value = data[i];
                return i;
            }
        }
        value = 0;
        return -1;
    }

    /// <inheritdoc/>
    protected override void QrCore(Tensor q, Tensor r, Tensor a)
    {
        int m = a.Shape[0], n = a.Shape[1], k = Math.Min(m, n);
        using var ctx = new LinalgContext(this, _dgemmKernel, Math.Max(m, n), (long)m * n + (long)m * k + 64L * (m + n));
        double* w = ctx.Arena.Take((long)m * n), tau = ctx.Arena.Take(k), qd = ctx.Arena.Take((long)m * k);
        Layout.Transpose(F(a), m, n, w, m);
        HouseholderQr.Factor(ctx, m, n, w, m, tau);
        HouseholderQr.FormQ(ctx, m, k, k, w, m, tau, qd, m);
        float* rOut = F(r);
        for (int i = 0; i < k; i++)
        {
            // A nonnegative diagonal makes the factorisation unique: flip row i of R with column i of Q.
            double sign = w[i + (nint)i * m] < 0 ? -1 : 1;
            float* row = rOut + (nint)i * n;
            for (int j = 0; j < i; j++) row[j] = 0;
            for (int j = i; j < n; j++) row[j] = (float)(sign * w[i + (nint)j * m]);
            if (sign < 0)
            {
                double* qi = qd + (nint)i * m;
                for (int t = 0; t < m; t++) qi[t] = -qi[t];
            }
        }
        Layout.Transpose(qd, m, m, k, F(q));
    }

    /// <inheritdoc/>
    protected override void SvdCore(Tensor u, Tensor s, Tensor vt, Tensor a)
    {
        int m = a.Shape[0], n = a.Shape[1], k = Math.Min(m, n);
        // Work on the tall one of A and Aᵀ: Aᵀ's column-major copy is A's bytes widened, A's is a transpose.
        bool tall = m >= n;
        int rows = Math.Max(m, n);
        using var ctx = new LinalgContext(this, _dgemmKernel, rows, 2L * rows * k + 3L * k * k + 64L * rows);
        double* w = ctx.Arena.Take((long)rows * k), uw = ctx.Arena.Take((long)rows * k);
        double* vw = ctx.Arena.Take((long)k * k), sd = ctx.Arena.Take(k);
        if (tall) Layout.Transpose(F(a), m, n, w, m);
        else Layout.Widen(F(a), n, m, w, n);
        DenseSvd.Compute(ctx, rows, k, w, rows, sd, uw, rows, vw, k);
        // A = U·S·Vᵀ when tall; otherwise Aᵀ = Uw·S·Vwᵀ, so U = Vw and V = Uw.
        double* uA = tall ? uw : vw, vA = tall ? vw : uw;
        int ldu = tall ? rows : k, ldv = tall ? k : rows;
        Layout.NormalizeSigns(k, uA, m, ldu, vA, n, ldv);
        Layout.Transpose(uA, ldu, m, k, F(u));
        Layout.Narrow(vA, ldv, n, k, F(vt));
        float* sOut = F(s);
        for (int i = 0; i < k; i++) sOut[i] = (float)sd[i];
    }

    /// <inheritdoc/>
    protected override void TruncatedSvdCore(Tensor u, Tensor s, Tensor vt, Tensor a, TruncatedSvdOptions options) =>
        RandomizedSvd.Compute(this, _dgemmKernel, u, s, vt, a, options);
}

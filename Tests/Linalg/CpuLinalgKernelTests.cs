using LoraRuntime.Cpu;
using LoraRuntime.Cpu.Gemm;
using LoraRuntime.Cpu.Linalg;
using LoraRuntime.Tests.Gemm;
using Xunit;

namespace LoraRuntime.Tests.Linalg;

/// <summary>
/// The CPU linear algebra's internal pieces on their own: the float64 DGEMM per micro-kernel against a float64
/// reference, the bidiagonal SVDs (QR iteration and divide and conquer) on bidiagonals that stress deflation and
/// grading, the iteration limits, and whole SVDs on every kernel.
/// </summary>
public sealed unsafe class CpuLinalgKernelTests : IDisposable
{
    private static readonly CpuWorkerPool s_workers = new(3);
    private readonly CpuBackend _backend = new(s_workers);

    public void Dispose() => _backend.Dispose();

    public static TheoryData<GemmKernelKind> Kernels => new() { GemmKernelKind.Avx512, GemmKernelKind.Avx2, GemmKernelKind.Scalar };

    [Theory]
    [MemberData(nameof(Kernels))]
    public void DgemmMatchesFloat64ForEveryTransposePair(GemmKernelKind kind)
    {
        CpuBackends.SkipUnlessSupported(kind);
        using var ctx = new LinalgContext(_backend, DgemmKernel.For(kind), 700, 1 << 20);
        var shapes = new (int M, int N, int K)[] { (1, 1, 1), (7, 5, 3), (24, 8, 256), (25, 9, 257), (61, 130, 300), (300, 17, 600), (48, 700, 64) };
        foreach (var (m, n, k) in shapes)
            foreach (bool ta in new[] { false, true })
                foreach (bool tb in new[] { false, true })
                    CheckDgemm(ctx, ta, tb, m, n, k, alpha: -0.5, beta: m % 2 == 0 ? 0 : 1.5, pad: 3);
    }

    private static void CheckDgemm(LinalgContext ctx, bool ta, bool tb, int m, int n, int k, double alpha, double beta, int pad)
    {
        var rng = new Random(m * 7 + n * 3 + k);
        int lda = (ta ? k : m) + pad, ldb = (tb ? n : k) + pad, ldc = m + pad;
        var a = new double[lda * (ta ? m : k)];
        var b = new double[ldb * (tb ? k : n)];
        var c = new double[ldc * n];
        foreach (var x in new[] { a, b, c })
            for (int i = 0; i < x.Length; i++) x[i] = rng.NextDouble() * 2 - 1;
        var expected = (double[])c.Clone();
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++)
            {
                double sum = 0;
                for (int p = 0; p < k; p++) sum += (ta ? a[p + i * lda] : a[i + p * lda]) * (tb ? b[j + p * ldb] : b[p + j * ldb]);
                expected[i + j * ldc] = alpha * sum + (beta == 0 ? 0 : beta * c[i + j * ldc]);
            }
        fixed (double* pa = a, pb = b, pc = c)
            ctx.Gemm.Run(ta, tb, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc);
        for (int j = 0; j < n; j++)
            for (int i = 0; i < ldc; i++)
            {
                double want = i < m ? expected[i + j * ldc] : expected[i + j * ldc]; // padding rows stay as they were
                Assert.True(Math.Abs(c[i + j * ldc] - want) <= 1e-12 * (1 + Math.Abs(want)) * k,
                    $"{(ta ? 'T' : 'N')}{(tb ? 'T' : 'N')} {m}×{n}×{k}: C[{i}, {j}] = {c[i + j * ldc]}, expected {want}");
            }
    }

    /// <summary>Bidiagonals that stress the solvers: random, graded over 30 decades, repeated values, zero diagonal entries, split.</summary>
    public static TheoryData<string, int> Bidiagonals => new()
    {
        { "random", 20 }, { "random", 26 }, { "random", 77 }, { "random", 300 }, { "graded", 90 }, { "ones", 120 },
        { "zero-diagonal", 80 }, { "split", 100 }, { "tiny-offdiagonal", 64 },
    };

    [Theory]
    [MemberData(nameof(Bidiagonals))]
    public void BidiagonalSvdsAreAccurate(string kind, int n)
    {
        var rng = new Random(n);
        var d = new double[n];
        var e = new double[Math.Max(n - 1, 0)];
        for (int i = 0; i < n; i++)
        {
            d[i] = kind switch
            {
                "graded" => Math.Pow(10, -30.0 * i / n) * (1 + rng.NextDouble()),
                "ones" => 1,
                "zero-diagonal" => i % 7 == 3 ? 0 : rng.NextDouble() * 2 - 1,
                _ => rng.NextDouble() * 2 - 1,
            };
            if (i < n - 1)
                e[i] = kind switch
                {
                    "graded" => Math.Pow(10, -30.0 * (i + 0.5) / n),
                    "ones" => 1,
                    "split" => i % 10 == 9 ? 0 : rng.NextDouble(),
                    "tiny-offdiagonal" => 1e-17 * rng.NextDouble(),
                    _ => rng.NextDouble() * 2 - 1,
                };
        }
        var dense = new double[n * n];
        for (int i = 0; i < n; i++)
        {
            dense[i * n + i] = d[i];
            if (i < n - 1) dense[i * n + i + 1] = e[i];
        }
        var reference = LinalgReference.SingularValues(dense, n, n, noiseFloor: false);
        foreach (bool divideAndConquer in new[] { false, true })
        {
            using var ctx = new LinalgContext(_backend, DgemmKernel.For(GemmKernelKind.Auto), n, 1 << 16);
            var s = (double[])d.Clone();
            var work = new double[Math.Max(n, 1)];
            Array.Copy(e, work, e.Length);
            var u = new double[n * n];
            var v = new double[n * n];
            for (int i = 0; i < n; i++) u[i * n + i] = v[i * n + i] = 1;
            fixed (double* ps = s, pe = work, pu = u, pv = v)
            {
                if (divideAndConquer) BidiagonalDivideConquer.Solve(ctx, n, ps, pe, pu, n, pv, n);
                else BidiagonalQr.Solve(n, ps, pe, pu, n, n, pv, n, n, ctx.Arena.Take(4L * n));
            }
            string what = $"{kind} {n} ({(divideAndConquer ? "divide and conquer" : "QR iteration")})";
            double norm = 0, residual = 0, orthoU = 0, orthoV = 0;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                {
                    double sum = 0, uu = 0, vv = 0;
                    for (int t = 0; t < n; t++)
                    {
                        sum += u[i + t * n] * s[t] * v[j + t * n];
                        uu += u[t + i * n] * u[t + j * n];
                        vv += v[t + i * n] * v[t + j * n];
                    }
                    residual += (dense[i * n + j] - sum) * (dense[i * n + j] - sum);
                    norm += dense[i * n + j] * dense[i * n + j];
                    orthoU += (uu - (i == j ? 1 : 0)) * (uu - (i == j ? 1 : 0));
                    orthoV += (vv - (i == j ? 1 : 0)) * (vv - (i == j ? 1 : 0));
                }
            Assert.True(Math.Sqrt(residual / norm) <= 1e-13, $"{what}: ‖B − U·S·Vᵀ‖/‖B‖ = {Math.Sqrt(residual / norm):E2}");
            Assert.True(Math.Sqrt(orthoU) <= 1e-12 && Math.Sqrt(orthoV) <= 1e-12, $"{what}: ‖UᵀU − I‖ = {Math.Sqrt(orthoU):E2}, ‖VᵀV − I‖ = {Math.Sqrt(orthoV):E2}");
            for (int i = 0; i < n; i++)
            {
                Assert.True(i == 0 || s[i] <= s[i - 1], $"{what}: not descending at {i}");
                // Both methods keep high relative accuracy for bidiagonals: even the 1e-30 values agree to ~1e-12.
                double tolerance = 1e-12 * n * reference[i] + 1e-15 * reference[0];
                Assert.True(Math.Abs(s[i] - reference[i]) <= tolerance, $"{what}: s[{i}] = {s[i]:R}, reference {reference[i]:R}");
            }
        }
    }

    [Fact]
    public void BidiagonalQrStopsAtItsIterationLimit()
    {
        var d = new double[] { 1, 2, 3, 4, 5, 6 };
        var e = new double[] { 1, 1, 1, 1, 1, 0 };
        var u = new double[36];
        var v = new double[36];
        var work = new double[24];
        fixed (double* pd = d, pe = e, pu = u, pv = v, pw = work)
        {
            double* dd = pd, ee = pe, uu = pu, vv = pv, ww = pw;
            var error = Assert.Throws<NoConvergenceException>(() => BidiagonalQr.Solve(6, dd, ee, uu, 6, 6, vv, 6, 6, ww, iterationLimit: 1));
            Assert.Contains("did not converge within 1 iterations", error.Message);
        }
    }

    [Fact]
    public void SecularEquationStopsAtItsIterationLimit()
    {
        var d = new double[] { 0, 1, 2, 3 };
        var z = new double[] { 0.5, 0.5, 0.5, 0.5 };
        var delta = new double[4];
        fixed (double* pd = d, pz = z, pw = delta)
        {
            double* dd = pd, zz = pz, ww = pw;
            Assert.Throws<NoConvergenceException>(() => SecularEquation.Solve(4, dd, zz, 1, ww, out _, maxIterations: 1));
            double tau = SecularEquation.Solve(4, dd, zz, 1, ww, out int origin);
            double sigma = d[origin] + tau, f = 1;
            for (int j = 0; j < 4; j++) f += z[j] * z[j] / ((d[j] - sigma) * (d[j] + sigma));
            Assert.True(Math.Abs(f) < 1e-12, $"f(σ) = {f}");
        }
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void WholeSvdAndQrRunOnEveryKernel(GemmKernelKind kind)
    {
        CpuBackends.SkipUnlessSupported(kind);
        using var backend = new CpuBackend(s_workers, kind);
        const int m = 140, n = 100;
        var a = LinalgReference.GaussianMatrix(m, n, 21);
        using var ta = backend.FromArray(a, m, n);
        using var u = backend.Allocate(m, n);
        using var s = backend.Allocate(n);
        using var vt = backend.Allocate(n, n);
        backend.Svd(u, s, vt, ta);
        LinalgConformance.AssertSvd(a, m, n, (u.ToArray(), s.ToArray(), vt.ToArray()), LinalgConformance.WellConditioned, $"{kind}");
        using var q = backend.Allocate(m, n);
        using var r = backend.Allocate(n, n);
        backend.Qr(q, r, ta);
        Assert.True(LinalgReference.ProductError(a, m, n, q.ToArray(), r.ToArray(), n) <= LinalgConformance.WellConditioned);
    }
}

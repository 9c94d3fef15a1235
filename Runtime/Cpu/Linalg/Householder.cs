using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace LoraRuntime.Cpu.Linalg;

/// <summary>
/// Elementary reflectors H = I − τ·v·vᵀ with v[0] = 1 (LAPACK's convention). Data here always starts as float32, so
/// every square and sum of squares fits float64's range (float32 spans 1e-45 to 3e38; float64 1e-308 to 1e308) and
/// norms need none of the rescaling loops a general float64 library carries.
/// </summary>
internal static unsafe class Householder
{
    /// <summary>
    /// The reflector that maps (α, x) to (β, 0): on return <paramref name="alpha"/> holds β, x holds v[1..n) and the
    /// result is τ (0 when x is already zero, so H = I). <paramref name="n"/> counts α too; x has n − 1 elements at
    /// stride <paramref name="incx"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double Generate(int n, ref double alpha, double* x, nint incx)
    {
        if (n <= 1) return 0;
        double sumSquares = 0;
        if (incx == 1) sumSquares = TensorPrimitives.SumOfSquares(new ReadOnlySpan<double>(x, n - 1));
        else
            for (int i = 0; i < n - 1; i++)
            {
                double xi = x[i * incx];
                sumSquares += xi * xi;
            }
        if (sumSquares == 0) return 0;
        double beta = -Math.CopySign(Math.Sqrt(alpha * alpha + sumSquares), alpha);
        double tau = (beta - alpha) / beta;
        double scale = 1 / (alpha - beta);
        if (incx == 1) TensorPrimitives.Multiply(new ReadOnlySpan<double>(x, n - 1), scale, new Span<double>(x, n - 1));
        else for (int i = 0; i < n - 1; i++) x[i * incx] *= scale;
        alpha = beta;
        return tau;
    }

    /// <summary>
    /// C (m×n, column-major) ← H·C for H = I − τ·v·vᵀ, v of m elements (v[0] must hold 1): w = Cᵀv, then C −= τ·v·wᵀ.
    /// <paramref name="work"/> holds n doubles.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ApplyLeft(LinalgContext ctx, double tau, double* v, int m, int n, double* c, int ldc, double* work)
    {
        if (tau == 0 || m == 0 || n == 0) return;
        ctx.Gemv.Run(true, m, n, 1, c, ldc, v, 1, 0, work, 1);
        var vs = new ReadOnlySpan<double>(v, m);
        for (int j = 0; j < n; j++)
        {
            double wj = tau * work[j];
            if (wj == 0) continue;
            var cj = new Span<double>(c + (nint)j * ldc, m);
            TensorPrimitives.MultiplyAdd(vs, -wj, cj, cj);
        }
    }
}

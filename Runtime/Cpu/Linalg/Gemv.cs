using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace LoraRuntime.Cpu.Linalg;

/// <summary>
/// Float64 matrix-vector products over column-major storage, y = α·op(A)·x + β·y, with strided x and y as BLAS
/// allows. The large ones (the two per column of the bidiagonalisation, half its flops, bound by memory) are split
/// across the workers: Aᵀx by columns, Ax by rows, so every task streams whole column segments. Strided vectors are
/// gathered into contiguous scratch first. One product at a time per instance.
/// </summary>
internal sealed unsafe class Gemv : IParallelWork
{
    /// <summary>
    /// Matrices below this many elements (750 KiB, about 310²) are multiplied on the calling thread: a hand-off to the workers
    /// costs microseconds when they are spinning and a scheduler slice when the machine is oversubscribed, while the
    /// product itself takes tens of microseconds.
    /// </summary>
    private const long MinParallelElements = 96_000;
    private readonly LinalgThreads _workers;
    private readonly double* _xBuffer, _yBuffer;

    private bool _transposed;
    private int _m, _n, _tasks;
    private double _alpha;
    private double* _a, _x, _y;
    private nint _lda;

    /// <summary>A GEMV for vectors of up to <paramref name="maxLength"/> elements, with scratch from <paramref name="arena"/>.</summary>
    public Gemv(LinalgThreads workers, Arena arena, long maxLength)
    {
        _workers = workers;
        _xBuffer = arena.Take(Math.Max(maxLength, 1));
        _yBuffer = arena.Take(Math.Max(maxLength, 1));
    }

    /// <summary>
    /// y = α·op(A)·x + β·y for the m×n column-major A (op(A) = Aᵀ when <paramref name="transposed"/>): y has m
    /// elements (n when transposed) at stride incy, x the other count at stride incx. β = 0 never reads y.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Run(bool transposed, int m, int n, double alpha, double* a, int lda, double* x, nint incx, double beta, double* y, nint incy)
    {
        int outputs = transposed ? n : m, inputs = transposed ? m : n;
        if (outputs <= 0) return;
        double* xs = x;
        if (incx != 1 && inputs > 0)
        {
            xs = _xBuffer;
            for (int i = 0; i < inputs; i++) xs[i] = x[i * incx];
        }
        double* ys = incy == 1 ? y : _yBuffer;
        if (beta == 0) new Span<double>(ys, outputs).Clear();
        else
        {
            if (incy != 1) for (int i = 0; i < outputs; i++) ys[i] = y[i * incy];
            if (beta != 1) for (int i = 0; i < outputs; i++) ys[i] *= beta;
        }
        if (inputs > 0 && alpha != 0)
        {
            _transposed = transposed; _m = m; _n = n; _alpha = alpha; _a = a; _lda = lda; _x = xs; _y = ys;
            long elements = (long)m * n;
            _tasks = _workers.Count > 1 && elements >= MinParallelElements ? Math.Min(2 * _workers.Count, outputs / 8 + 1) : 1;
            if (_tasks == 1) Execute(0, 0);
            else _workers.Run(this, _tasks);
        }
        if (incy != 1)
            for (int i = 0; i < outputs; i++) y[i * incy] = ys[i];
    }

    public void Execute(int task, int worker)
    {
        int outputs = _transposed ? _n : _m;
        int start = (int)((long)task * outputs / _tasks), end = (int)((long)(task + 1) * outputs / _tasks);
        if (start >= end) return;
        if (_transposed) DotColumns(_a + start * _lda, _lda, _m, end - start, _x, _y + start, _alpha);
        else AxpyColumns(_a + start, _lda, end - start, _n, _x, _y + start, _alpha);
    }

    /// <summary>y[j] += α·(column j of A)·x for j &lt; n: four columns at a time share each load of x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotColumns(double* a, nint lda, int m, int n, double* x, double* y, double alpha)
    {
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; j + 4 <= n; j += 4)
            {
                double* a0 = a + j * lda, a1 = a0 + lda, a2 = a1 + lda, a3 = a2 + lda;
                Vector256<double> s0 = default, s1 = default, s2 = default, s3 = default;
                int i = 0;
                for (; i + 4 <= m; i += 4)
                {
                    var xv = Vector256.Load(x + i);
                    s0 = Vector256.FusedMultiplyAdd(Vector256.Load(a0 + i), xv, s0);
                    s1 = Vector256.FusedMultiplyAdd(Vector256.Load(a1 + i), xv, s1);
                    s2 = Vector256.FusedMultiplyAdd(Vector256.Load(a2 + i), xv, s2);
                    s3 = Vector256.FusedMultiplyAdd(Vector256.Load(a3 + i), xv, s3);
                }
                double d0 = Vector256.Sum(s0), d1 = Vector256.Sum(s1), d2 = Vector256.Sum(s2), d3 = Vector256.Sum(s3);
                for (; i < m; i++)
                {
                    d0 += a0[i] * x[i]; d1 += a1[i] * x[i]; d2 += a2[i] * x[i]; d3 += a3[i] * x[i];
                }
                y[j] += alpha * d0; y[j + 1] += alpha * d1; y[j + 2] += alpha * d2; y[j + 3] += alpha * d3;
            }
        }
        for (; j < n; j++)
        {
            double* aj = a + j * lda;
            double d = 0;
            for (int i = 0; i < m; i++) d += aj[i] * x[i];
            y[j] += alpha * d;
        }
    }

    /// <summary>y[0..m) += α·Σ_j x[j]·(column j of A): four columns at a time share each load and store of y.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AxpyColumns(double* a, nint lda, int m, int n, double* x, double* y, double alpha)
    {
        int j = 0;
        for (; j + 4 <= n; j += 4)
        {
            double* a0 = a + j * lda, a1 = a0 + lda, a2 = a1 + lda, a3 = a2 + lda;
            double x0 = alpha * x[j], x1 = alpha * x[j + 1], x2 = alpha * x[j + 2], x3 = alpha * x[j + 3];
            int i = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                Vector256<double> v0 = Vector256.Create(x0), v1 = Vector256.Create(x1), v2 = Vector256.Create(x2), v3 = Vector256.Create(x3);
                for (; i + 4 <= m; i += 4)
                {
                    var acc = Vector256.Load(y + i);
                    acc = Vector256.FusedMultiplyAdd(Vector256.Load(a0 + i), v0, acc);
                    acc = Vector256.FusedMultiplyAdd(Vector256.Load(a1 + i), v1, acc);
                    acc = Vector256.FusedMultiplyAdd(Vector256.Load(a2 + i), v2, acc);
                    acc = Vector256.FusedMultiplyAdd(Vector256.Load(a3 + i), v3, acc);
                    Vector256.Store(acc, y + i);
                }
            }
            for (; i < m; i++) y[i] += a0[i] * x0 + a1[i] * x1 + a2[i] * x2 + a3[i] * x3;
        }
        for (; j < n; j++)
        {
            double* aj = a + j * lda;
            double xj = alpha * x[j];
            for (int i = 0; i < m; i++) y[i] += aj[i] * xj;
        }
    }
}

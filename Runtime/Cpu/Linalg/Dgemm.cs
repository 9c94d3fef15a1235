using System.Runtime.CompilerServices;

namespace LoraRuntime.Cpu.Linalg;

/// <summary>
/// C = α·op(A)·op(B) + β·C in float64 over column-major storage (LAPACK's convention: element (i, j) of a matrix with
/// leading dimension ld is at i + j·ld). The float32 GEMM's structure: op(A) is packed once into panels of MR rows
/// (phase 1, shared by all workers), then each task packs its own Kc×Nc block of op(B) and runs the micro-kernel over
/// its rows (phase 2). Small products stay on the calling thread. Buffers come from the call's <see cref="Arena"/>.
/// One product at a time per instance.
/// </summary>
internal sealed unsafe class Dgemm : IParallelWork
{
    /// <summary>
    /// Products below this many flops (a few hundred microseconds of work) run on the calling thread: waking the
    /// workers costs microseconds, or a scheduler slice on an oversubscribed machine.
    /// </summary>
    private const double MinParallelFlops = 8e6;
    private const int PackGroup = 8;
    /// <summary>Rows of packed A per L2 block (MC): 144×256 doubles is 288 KiB.</summary>
    private const int McRows = 144;

    private readonly DgemmKernel _k;
    private readonly LinalgThreads _workers;
    private readonly long _packedACap;
    private readonly double* _packedA;
    private readonly double*[] _packedB;
    private readonly double*[] _tile;

    private bool _transA, _transB, _packPhase;
    private int _m, _n, _depth, _mPanels, _nBlocks, _mRanges;
    private double _alpha, _beta;
    private double* _a, _b, _c;
    private nint _lda, _ldb, _ldc;

    /// <summary>
    /// A DGEMM whose packed op(A) holds up to <paramref name="maxRows"/> × <paramref name="maxDepth"/> (taller products
    /// are cut into row chunks), with per-worker buffers taken from <paramref name="arena"/>.
    /// </summary>
    public Dgemm(DgemmKernel kernel, LinalgThreads workers, Arena arena, long maxRows, long maxDepth)
    {
        _k = kernel;
        _workers = workers;
        long rows = (Math.Max(maxRows, 1) + kernel.Mr - 1) / kernel.Mr * kernel.Mr;
        _packedACap = Math.Max((long)kernel.Mr * kernel.Kc, Math.Min(1L << 21, rows * Math.Max(maxDepth, 1)));
        _packedA = arena.Take(_packedACap);
        int threads = workers.Pool.ThreadCount;
        _packedB = new double*[threads];
        _tile = new double*[threads];
        for (int w = 0; w < threads; w++)
        {
            _packedB[w] = arena.Take((long)kernel.Kc * kernel.Nc);
            _tile[w] = arena.Take(kernel.Mr * kernel.Nr);
        }
    }

    /// <summary>C (m×n, ldc) = α·op(A)·op(B) + β·C; op(A) is m×k, op(B) k×n. β = 0 never reads C.</summary>
    public void Run(bool transA, bool transB, int m, int n, int k, double alpha, double* a, int lda, double* b, int ldb,
        double beta, double* c, int ldc)
    {
        if (m <= 0 || n <= 0) return;
        if (k <= 0 || alpha == 0)
        {
            ScaleC(c, m, n, ldc, beta);
            return;
        }
        _transA = transA; _transB = transB; _n = n; _depth = k; _alpha = alpha; _beta = beta;
        _b = b; _lda = lda; _ldb = ldb; _ldc = ldc;
        int mr = _k.Mr;
        int chunk = (int)Math.Max(mr, Math.Min(m, _packedACap / k) / mr * mr);
        for (int m0 = 0; m0 < m; m0 += chunk)
        {
            _m = Math.Min(chunk, m - m0);
            _a = transA ? a + (nint)m0 * lda : a + m0;
            _c = c + m0;
            RunChunk();
        }
    }

    private void RunChunk()
    {
        _mPanels = (_m + _k.Mr - 1) / _k.Mr;
        _nBlocks = (_n + _k.Nc - 1) / _k.Nc;
        int threads = _workers.Count;
        bool parallel = threads > 1 && 2.0 * _m * _n * _depth >= MinParallelFlops;
        int packTasks = (_mPanels + PackGroup - 1) / PackGroup;
        _mRanges = parallel ? Math.Clamp((2 * threads + _nBlocks - 1) / _nBlocks, 1, _mPanels) : 1;
        int computeTasks = _nBlocks * _mRanges;
        if (!parallel)
        {
            for (int t = 0; t < packTasks; t++) PackA(t);
            for (int t = 0; t < computeTasks; t++) Compute(t, 0);
            return;
        }
        _packPhase = true;
        _workers.Run(this, packTasks);
        _packPhase = false;
        _workers.Run(this, computeTasks);
    }

    public void Execute(int task, int worker)
    {
        if (_packPhase) PackA(task);
        else Compute(task, worker);
    }

    /// <summary>Packs panels [group·PackGroup, …) of op(A) for every depth slab: slab pc holds MPanels panels of MR×kc.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void PackA(int group)
    {
        int mr = _k.Mr;
        int p0 = group * PackGroup, p1 = Math.Min(_mPanels, p0 + PackGroup);
        for (int pc = 0; pc < _depth; pc += _k.Kc)
        {
            int kc = Math.Min(_k.Kc, _depth - pc);
            double* slab = _packedA + (long)pc * _mPanels * mr;
            for (int p = p0; p < p1; p++)
            {
                int row0 = p * mr, h = Math.Min(mr, _m - row0);
                double* dst = slab + (long)p * mr * kc;
                if (!_transA)
                {
                    // op(A)[i, q] = a[i + q·lda]: each depth step is h contiguous doubles.
                    double* src = _a + row0 + (nint)pc * _lda;
                    for (int q = 0; q < kc; q++, src += _lda, dst += mr)
                    {
                        new ReadOnlySpan<double>(src, h).CopyTo(new Span<double>(dst, h));
                        for (int i = h; i < mr; i++) dst[i] = 0;
                    }
                }
                else
                {
                    // op(A)[i, q] = a[q + i·lda]: gather one element from each of the h stored columns per depth step, so
                    // that the writes are contiguous (strided writes would touch a cache line per element).
                    double* src = _a + pc + (nint)row0 * _lda;
                    for (int q = 0; q < kc; q++, dst += mr)
                    {
                        double* column = src + q;
                        for (int i = 0; i < h; i++) dst[i] = column[i * _lda];
                        for (int i = h; i < mr; i++) dst[i] = 0;
                    }
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Compute(int task, int worker)
    {
        int mr = _k.Mr, nr = _k.Nr;
        int nb = task / _mRanges, range = task % _mRanges;
        int n0 = nb * _k.Nc, cols = Math.Min(_k.Nc, _n - n0);
        int nPanels = (cols + nr - 1) / nr;
        int p0 = (int)((long)range * _mPanels / _mRanges), p1 = (int)((long)(range + 1) * _mPanels / _mRanges);
        double* bp = _packedB[worker];
        double* tile = _tile[worker];
        var kernel = _k.Compute;
        for (int pc = 0; pc < _depth; pc += _k.Kc)
        {
            int kc = Math.Min(_k.Kc, _depth - pc);
            PackB(pc, kc, n0, cols, bp);
            double beta = pc == 0 ? _beta : 1;
            double* slab = _packedA + (long)pc * _mPanels * mr;
            // MC blocking: a few A panels stay in L2 while the B panels stream past them, each held in L1.
            for (int ic = p0; ic < p1; ic += McRows / mr)
            for (int q = 0; q < nPanels; q++)
            {
                double* bq = bp + (long)q * nr * kc;
                int w = Math.Min(nr, cols - q * nr);
                double* ccol = _c + (nint)(n0 + q * nr) * _ldc;
                for (int p = ic, pEnd = Math.Min(p1, ic + McRows / mr); p < pEnd; p++)
                {
                    double* ap = slab + (long)p * mr * kc;
                    int row = p * mr, h = Math.Min(mr, _m - row);
                    if (h == mr && w == nr)
                    {
                        kernel(kc, ap, bq, ccol + row, _ldc, _alpha, beta);
                    }
                    else
                    {
                        kernel(kc, ap, bq, tile, mr, _alpha, 0);
                        MergeTile(tile, mr, ccol + row, _ldc, h, w, beta);
                    }
                }
            }
        }
    }

    /// <summary>Packs kc depth × cols columns of op(B) from (pc, n0) into ⌈cols/nr⌉ panels of kc·nr doubles.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void PackB(int pc, int kc, int n0, int cols, double* dst)
    {
        int nr = _k.Nr;
        for (int c0 = 0; c0 < cols; c0 += nr, dst += (nint)nr * kc)
        {
            int w = Math.Min(nr, cols - c0);
            if (_transB)
            {
                // op(B)[q, j] = b[j + q·ldb]: each depth step is w contiguous doubles.
                double* src = _b + (n0 + c0) + (nint)pc * _ldb;
                for (int q = 0; q < kc; q++, src += _ldb)
                {
                    double* d = dst + (nint)q * nr;
                    for (int j = 0; j < w; j++) d[j] = src[j];
                    for (int j = w; j < nr; j++) d[j] = 0;
                }
            }
            else
            {
                // op(B)[q, j] = b[q + j·ldb]: gather one element from each of the w columns per depth step (contiguous writes).
                double* src = _b + pc + (nint)(n0 + c0) * _ldb;
                for (int q = 0; q < kc; q++)
                {
                    double* d = dst + (nint)q * nr;
                    double* row = src + q;
                    for (int j = 0; j < w; j++) d[j] = row[j * _ldb];
                    for (int j = w; j < nr; j++) d[j] = 0;
                }
            }
        }
    }

    /// <summary>C[h×w] = tile + β·C for an edge tile (tile column-major with leading dimension ldt).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MergeTile(double* tile, int ldt, double* c, nint ldc, int h, int w, double beta)
    {
        for (int j = 0; j < w; j++)
        {
            double* t = tile + j * ldt, d = c + j * ldc;
            if (beta == 0) for (int i = 0; i < h; i++) d[i] = t[i];
            else for (int i = 0; i < h; i++) d[i] = t[i] + beta * d[i];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScaleC(double* c, int m, int n, nint ldc, double beta)
    {
        for (int j = 0; j < n; j++)
        {
            var col = new Span<double>(c + j * ldc, m);
            if (beta == 0) col.Clear();
            else if (beta != 1) System.Numerics.Tensors.TensorPrimitives.Multiply(col, beta, col);
        }
    }
}

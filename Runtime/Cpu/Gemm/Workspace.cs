using System.Runtime.Intrinsics;
using System.Runtime.CompilerServices;
using System.Numerics.Tensors;

namespace LoraRuntime.Cpu.Gemm;

/// <summary>
/// The scratch memory and the parallel work of one GEMM call at a time: a packed-A buffer shared by all workers
/// (written in phase 1), and per worker a packed-B block, a scratch tile and a GEMV buffer (phase 2). All native,
/// reserved on first use and kept, so a warm call allocates nothing.
/// </summary>
internal sealed unsafe partial class Workspace : IParallelWork, IDisposable
{
    /// <summary>Packed A is bounded (16 MiB): taller problems are split into row chunks, many problems into waves.</summary>
    private const long PackedACapFloats = 4L << 20;
    /// <summary>A-panels packed per phase-1 task.</summary>
    private const int PackGroup = 8;
    /// <summary>B-panels of one depth block packed per phase-1 task when B is shared.</summary>
    private const int PackGroupB = 4;
    /// <summary>Products with at most this many row panels read a row-major B as stored, as small ones do (see <see cref="Flush"/>).</summary>
    private const int DirectBMaxPanels = 4;
    /// <summary>Products this narrow (and tall) are computed transposed (see <see cref="AddJobs"/>).</summary>
    private const int NarrowColumns = 8;
    /// <summary>The largest B packed once and shared (4 MiB): beyond it, rows are rarely split.</summary>
    private const long SharedBCapFloats = 1L << 20;
    /// <summary>Widest GEMV column segment: its sums stay in L1 (16 KiB).</summary>
    private const int GemvColumnsMaxChunk = 4096;
    private const int GemvRowsChunk = 64;
    /// <summary>
    /// Below this many floating-point operations a call runs on the calling thread: waking the workers costs more than it
    /// saves (as <see cref="Primitives.ParallelPlan.MinParallelElements"/> for the element-wise primitives). Many tiny
    /// GEMMs — a decode step's per-row attention — otherwise pay a hand-off each.
    /// </summary>
    internal const double MinParallelFlops = 1 << 20;

    /// <summary>
    /// Products of at most this many multiply-adds (64 Mi; a training step's largest projection, 768 × 512 × 128, is 48 Mi) read their
    /// operands as stored where the kernels can (see <see cref="GemmJob.DirectA"/>): packing would cost a third of the
    /// product. Larger ones pack, whose contiguous panels keep power-of-two leading dimensions (4 KiB rows) from
    /// aliasing in L1 (a direct 1024³ runs at ~0.88× the packed one).
    /// </summary>
    internal const long DirectMaxMacs = 1L << 26;

    /// <summary>
    /// An operand read in place needs rows fewer than this many floats apart: rows 4 KiB apart or more alias in L1 and
    /// cross a page every depth step (a 512 × 4096 × 16 product read its [16, 4096] B at ~0.8× the packed speed).
    /// </summary>
    internal const long DirectMaxStride = 1024;

    private readonly GemmKernel _k;
    private readonly CpuWorkerPool _workers;
    private readonly float*[] _packedB;
    private readonly float*[] _decodeRows; // per worker, taken at the first decoded product: NR rows of one depth block
    private readonly float*[] _tile;    // MR·NR scratch tile, also the GEMV column accumulator
    private readonly float*[] _vector;  // GEMV: a contiguous copy of a strided x
    private readonly long[] _vectorCap;
    private float* _packedA;
    private long _packedACap;
    private GemmJob[] _jobs = new GemmJob[8];
    private int _jobCount;
    private long _packedUse;
    private bool _packPhase;

    public Workspace(GemmKernel kernel, CpuWorkerPool workers)
    {
        _k = kernel;
        _workers = workers;
        int n = workers.ThreadCount;
        _packedB = new float*[n];
        _decodeRows = new float*[n];
        _tile = new float*[n];
        _vector = new float*[n];
        _vectorCap = new long[n];
        for (int w = 0; w < n; w++)
        {
            _packedB[w] = SgemmDriver.Alloc((long)_k.Kc * _k.Nc);
            _tile[w] = SgemmDriver.Alloc(Math.Max(_k.Mr * _k.Nr, GemvColumnsMaxChunk));
        }
    }

    /// <summary>
    /// Runs the problems (each <paramref name="batchCount"/> times at the strides). A <paramref name="bias"/> is for one
    /// problem of one batch: added to every row of C in the tiles' epilogue, or after the product where the job is not
    /// tiled that way (GEMV, inner-product and transposed jobs, all of few rows or columns).
    /// </summary>
    public void Execute(ReadOnlySpan<GemmProblem> problems, int batchCount, long strideA, long strideB, long strideC, float* bias = null)
    {
        _jobCount = 0;
        _packedUse = 0;
        bool fused = true;
        foreach (ref readonly var p in problems)
        {
            for (int batch = 0; batch < batchCount; batch++)
            {
                float* a = (float*)p.A.Pointer + p.OffsetA + batch * strideA;
                float* b = (float*)p.B.Pointer + p.OffsetB + batch * strideB;
                float* c = (float*)p.C.Pointer + p.OffsetC + batch * strideC;
                fused = AddJobs(p, a, b, c, panelB: false, bias);
            }
        }
        Flush();
        if (bias is not null && !fused)
        {
            ref readonly var p = ref problems[0];
            var row = new ReadOnlySpan<float>(bias, p.N);
            for (int i = 0; i < p.M; i++)
            {
                var c = new Span<float>((float*)p.C.Pointer + p.OffsetC + (long)i * p.Ldc, p.N);
                TensorPrimitives.Add(c, row, c);
            }
        }
    }

    /// <summary>
    /// One problem whose B is a <see cref="PackedMatrix"/>'s panels: B is never packed or shared, each panel is streamed
    /// as stored (K×NR contiguous, so every depth block of it is a ready kc×NR panel), and M = 1 reads the panels as
    /// GEMV columns.
    /// </summary>
    public void ExecutePanels(in GemmProblem p)
    {
        _jobCount = 0;
        _packedUse = 0;
        AddJobs(p, (float*)p.A.Pointer + p.OffsetA, (float*)p.B.Pointer + p.OffsetB, (float*)p.C.Pointer + p.OffsetC, panelB: true);
        Flush();
    }

    /// <summary>Adds the jobs of one problem; true when <paramref name="bias"/> (if any) is added by them, false when it is left to the caller.</summary>
    private bool AddJobs(in GemmProblem p, float* a, float* b, float* c, bool panelB, float* bias = null)
    {
        if (p.M == 0 || p.N == 0) return true;
        if (p.K == 0 || p.Alpha == 0f)
        {
            ScaleC(c, p.M, p.N, p.Ldc, p.Beta);
            return false;
        }
        var job = new GemmJob
        {
            TransA = p.TransA == Transpose.Yes, TransB = p.TransB == Transpose.Yes,
            M = p.M, N = p.N, K = p.K, Alpha = p.Alpha, Beta = p.Beta,
            A = a, B = b, C = c, Lda = p.Lda, Ldb = p.Ldb, Ldc = p.Ldc, PanelB = panelB,
        };
        if (panelB && p.M == 1)
        {
            // y = C row 0, x = A row 0 (A as stored), each panel a K×NR matrix of row stride NR.
            job.Kind = GemmJobKind.GemvPanels;
            job.Y = c; job.IncY = 1; job.Outputs = p.N;
            job.X = a; job.IncX = 1;
            job.Mat = b; job.Ldm = _k.Nr; job.Depth = p.K;
            int panels = (p.N + _k.Nr - 1) / _k.Nr;
            // A few tasks per thread, each a multiple of four panels (the GEMV kernel streams eight or four at once).
            job.Chunk = RoundUp(Math.Max(1, (panels + 4 * _workers.ThreadCount - 1) / (4 * _workers.ThreadCount)), 4);
            Push(job);
            return false;
        }
        if (!panelB && (p.M == 1 || p.N == 1))
        {
            AddGemv(ref job, _workers.ThreadCount);
            if (job.DepthSplits > 1)
            {
                long need = (long)job.DepthSplits * job.Outputs;
                if (_packedUse + need > PackedACapFloats && _jobCount > 0) Flush();
                job.PackedA = _packedUse;
                _packedUse += need;
            }
            Push(job);
            return false;
        }
        if (!panelB && UseDot(job))
        {
            job.Kind = GemmJobKind.Dot;
            job.Ldm = (p.K + DotKernels.DepthAlign - 1) / DotKernels.DepthAlign * DotKernels.DepthAlign;
            long needBt = (long)RoundUp(p.N, DotKernels.Cols) * job.Ldm;
            if (_packedUse + needBt > PackedACapFloats && _jobCount > 0) Flush();
            job.PackedA = _packedUse;
            _packedUse += needBt;
            Push(job);
            return false;
        }
        // A few columns and many rows (a rank-R gradient dB = dyᵀ·h, A stored transposed so the inner-product form
        // does not apply): most of each NR-wide tile would be padding. Compute Cᵀ = op(B)ᵀ·op(A)ᵀ instead, whose rows
        // are few and columns many, and write its tiles back transposed.
        if (!panelB && p.N <= NarrowColumns && p.M >= 4 * _k.Mr)
        {
            job.TransposedC = true;
            (job.M, job.N) = (p.N, p.M);
            job.A = b;
            job.B = a;
            (job.Lda, job.Ldb) = (p.Ldb, p.Lda);
            (job.TransA, job.TransB) = (p.TransB != Transpose.Yes, p.TransA != Transpose.Yes);
            a = job.A;
        }
        // Split tall problems so one chunk's packed A fits the cap. A small product reads A in place (see
        // GemmJob.DirectA): one chunk, and only a partial last panel takes packed room; a row-major B too.
        int mr = _k.Mr;
        bool small = (long)job.M * job.N * job.K <= DirectMaxMacs;
        bool directA = small && job.Lda < DirectMaxStride, directB = small && !job.TransB && job.Ldb < DirectMaxStride;
        int chunkRows = directA ? job.M : (int)Math.Max(mr, Math.Min(job.M, PackedACapFloats / job.K) / mr * mr);
        for (int m0 = 0; m0 < job.M; m0 += chunkRows)
        {
            int rows = Math.Min(chunkRows, job.M - m0);
            int panels = (rows + mr - 1) / mr;
            long need = directA ? (rows % mr != 0 ? (long)mr * job.K : 0) : (long)panels * mr * job.K;
            // Room for a shared B where rows may be split among threads (few column blocks); Flush decides.
            long needB = (long)job.K * RoundUp(job.N, _k.Nr);
            bool mayShareB = !panelB && !directB && panels >= 2 && (job.N + _k.Nc - 1) / _k.Nc < 2 * _workers.ThreadCount && needB <= SharedBCapFloats;
            if (_packedUse + need + (mayShareB ? needB : 0) > PackedACapFloats && _jobCount > 0) Flush();
            var part = job;
            part.M = rows;
            part.A = job.TransA ? a + m0 : a + m0 * job.Lda;
            part.C = job.TransposedC ? c + m0 : c + m0 * job.Ldc; // a transposed job's rows are C's columns
            part.MPanels = panels;
            part.DirectA = directA;
            part.DirectRowMajorB = directB;
            part.PackedA = _packedUse;
            _packedUse += need;
            part.PackedB = -1;
            if (mayShareB && _packedUse + needB <= PackedACapFloats)
            {
                part.PackedB = _packedUse;
                _packedUse += needB;
            }
            part.Bias = job.TransposedC ? null : bias;
            Push(part);
        }
        return !job.TransposedC;
    }

    private static int RoundUp(int x, int to) => (x + to - 1) / to * to;

    private void Push(in GemmJob job)
    {
        if (_jobCount == _jobs.Length) Array.Resize(ref _jobs, _jobs.Length * 2);
        _jobs[_jobCount++] = job;
    }

    /// <summary>Runs the jobs gathered so far: phase 1 packs every job's A, phase 2 computes.</summary>
    private void Flush()
    {
        if (_jobCount == 0) return;
        EnsurePackedA(_packedUse);
        double totalFlops = 0;
        for (int i = 0; i < _jobCount; i++) totalFlops += 2.0 * _jobs[i].M * _jobs[i].N * _jobs[i].K;
        int packTasks = 0, computeTasks = 0;
        int threads = _workers.ThreadCount;
        for (int i = 0; i < _jobCount; i++)
        {
            ref var j = ref _jobs[i];
            j.PackTaskStart = packTasks;
            j.ComputeTaskStart = computeTasks;
            if (j.Kind == GemmJobKind.Dot)
            {
                j.PackTaskCount = (j.N + DotKernels.Cols - 1) / DotKernels.Cols;
                double share = 2.0 * j.M * j.N * j.K / totalFlops;
                j.MRanges = Math.Clamp((int)Math.Ceiling(2 * threads * share), 1, (j.M + 1) / 2);
                j.ComputeTaskCount = j.MRanges;
            }
            else if (j.Kind == GemmJobKind.Packed)
            {
                j.APackTasks = j.DirectA ? (j.M % _k.Mr != 0 ? 1 : 0) : (j.MPanels + PackGroup - 1) / PackGroup;
                j.ColumnBlock = _k.Nc;
                j.NBlocks = (j.N + _k.Nc - 1) / _k.Nc;
                // Aim for about two tasks per thread in all, shared out by work; split rows when columns are few,
                // and columns into narrower blocks when rows are few too (a rank-R weight gradient: M = R ≤ MR).
                double share = 2.0 * j.M * j.N * j.K / totalFlops;
                int wanted = (int)Math.Ceiling(2 * threads * share);
                // A decoded B is decoded by every task that uses it: share out columns only, never rows.
                j.MRanges = j.DecodeB != null ? 1 : Math.Clamp((wanted + j.NBlocks - 1) / j.NBlocks, 1, j.MPanels);
                if (j.NBlocks * j.MRanges < wanted)
                {
                    int blocks = Math.Min((wanted + j.MRanges - 1) / j.MRanges, (j.N + _k.Nr - 1) / _k.Nr);
                    j.ColumnBlock = RoundUp((j.N + blocks - 1) / blocks, _k.Nr);
                    j.NBlocks = (j.N + j.ColumnBlock - 1) / j.ColumnBlock;
                }
                j.ComputeTaskCount = j.NBlocks * j.MRanges;
                j.SharedB = !j.PanelB && j.MRanges > 1 && j.PackedB >= 0;
                // With few row panels each B element is used a few times only: packing it would cost as much memory
                // traffic as the product (a decode batch against a weight), so the kernel reads B as stored; so does
                // a small product whatever its row panels (see DirectMaxMacs, DirectMaxStride).
                j.DirectB = !j.PanelB && !j.TransB && !j.SharedB && (j.MPanels <= DirectBMaxPanels || j.DirectRowMajorB);
                int bPanels = (j.N + _k.Nr - 1) / _k.Nr, kBlocks = (j.K + _k.Kc - 1) / _k.Kc;
                j.PackTaskCount = j.APackTasks + (j.SharedB ? kBlocks * ((bPanels + PackGroupB - 1) / PackGroupB) : 0);
            }
            else if (j.Kind == GemmJobKind.GemvPanels)
            {
                j.PackTaskCount = 0;
                int panels = (j.Outputs + _k.Nr - 1) / _k.Nr;
                j.ComputeTaskCount = (panels + j.Chunk - 1) / j.Chunk;
            }
            else
            {
                j.PackTaskCount = 0;
                j.ComputeTaskCount = (j.Outputs + j.Chunk - 1) / j.Chunk * Math.Max(1, j.DepthSplits);
                j.Pending = j.ComputeTaskCount;
            }
            packTasks += j.PackTaskCount;
            computeTasks += j.ComputeTaskCount;
        }
        bool serial = totalFlops < MinParallelFlops;
        _packPhase = true;
        RunTasks(packTasks, serial);
        _packPhase = false;
        RunTasks(computeTasks, serial);
        _jobCount = 0;
        _packedUse = 0;
    }

    private void RunTasks(int count, bool serial)
    {
        if (!serial) _workers.Run(this, count);
        else
            for (int t = 0; t < count; t++) Execute(t, 0);
    }

    public void Execute(int task, int worker)
    {
        ref GemmJob j = ref FindJob(task);
        if (_packPhase)
        {
            int local = task - j.PackTaskStart;
            if (j.Kind == GemmJobKind.Dot) PackTransposedB(ref j, local);
            else if (local < j.APackTasks) PackA(ref j, local);
            else PackSharedB(ref j, local - j.APackTasks);
        }
        else if (j.Kind == GemmJobKind.Dot) ComputeDot(ref j, task - j.ComputeTaskStart);
        else if (j.Kind == GemmJobKind.Packed) Compute(ref j, task - j.ComputeTaskStart, worker);
        else if (j.Kind == GemmJobKind.GemvPanels) GemvPanels(ref j, task - j.ComputeTaskStart, worker);
        else if (j.Kind == GemmJobKind.GemvColumns) GemvColumns(ref j, task - j.ComputeTaskStart, worker);
        else GemvRows(ref j, task - j.ComputeTaskStart, worker);
    }

    /// <summary>The job whose task range of the current phase holds <paramref name="task"/> (binary search).</summary>
    private ref GemmJob FindJob(int task)
    {
        int lo = 0, hi = _jobCount - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) >> 1;
            int start = _packPhase ? _jobs[mid].PackTaskStart : _jobs[mid].ComputeTaskStart;
            if (start <= task) lo = mid; else hi = mid - 1;
        }
        // Jobs with empty ranges share a start with their successor; step forward to the one that owns the task.
        while (_packPhase ? _jobs[lo].PackTaskCount == 0 || task >= _jobs[lo].PackTaskStart + _jobs[lo].PackTaskCount
                          : task >= _jobs[lo].ComputeTaskStart + _jobs[lo].ComputeTaskCount)
            lo++;
        return ref _jobs[lo];
    }

    private void PackA(ref GemmJob j, int group)
    {
        int mr = _k.Mr, kcMax = _k.Kc;
        // A direct job packs its partial last panel alone, the one panel of its buffer.
        int p0 = j.DirectA ? j.MPanels - 1 : group * PackGroup, p1 = Math.Min(j.MPanels, p0 + PackGroup);
        int bufferPanels = j.DirectA ? 1 : j.MPanels, first = j.DirectA ? p0 : 0;
        int row0 = p0 * mr, rows = Math.Min(j.M, p1 * mr) - row0;
        for (int pc = 0; pc < j.K; pc += kcMax)
        {
            int kc = Math.Min(kcMax, j.K - pc);
            float* src = j.TransA ? j.A + pc * j.Lda + row0 : j.A + row0 * j.Lda + pc;
            float* dst = _packedA + j.PackedA + (long)pc * bufferPanels * mr + (long)(p0 - first) * mr * kc;
            Packing.PackA(src, j.Lda, j.TransA, rows, kc, mr, dst);
        }
    }

    /// <summary>
    /// One task's share of the shared packed B: <see cref="PackGroupB"/> panels of one depth block. The panels of
    /// depth block pc start at pc·NPad (NPad = ⌈N/NR⌉·NR), panel q within it at q·NR·kc, so the block a compute task
    /// reads for columns n0.. lies at pc·NPad + n0·kc, as <see cref="Packing.PackB"/> would have written it.
    /// </summary>
    private void PackSharedB(ref GemmJob j, int task)
    {
        int nr = _k.Nr, kcMax = _k.Kc;
        int bPanels = (j.N + nr - 1) / nr, groups = (bPanels + PackGroupB - 1) / PackGroupB;
        int pc = task / groups * kcMax, q0 = task % groups * PackGroupB;
        int kc = Math.Min(kcMax, j.K - pc), c0 = q0 * nr, cols = Math.Min(PackGroupB * nr, j.N - c0);
        float* src = j.TransB ? j.B + c0 * j.Ldb + pc : j.B + pc * j.Ldb + c0;
        Packing.PackB(src, j.Ldb, j.TransB, cols, kc, nr, _packedA + j.PackedB + (long)pc * bPanels * nr + (long)c0 * kc);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Compute(ref GemmJob j, int task, int worker)
    {
        int mr = _k.Mr, nr = _k.Nr, kcMax = _k.Kc;
        int nb = task / j.MRanges, range = task % j.MRanges;
        int n0 = nb * j.ColumnBlock, cols = Math.Min(j.ColumnBlock, j.N - n0);
        int nPanels = (cols + nr - 1) / nr;
        int p0 = (int)((long)range * j.MPanels / j.MRanges), p1 = (int)((long)(range + 1) * j.MPanels / j.MRanges);
        float* bp;
        float* tile = _tile[worker];
        var kernel = _k.Compute;
        int directPanels = j.DirectB ? cols / nr : 0; // panels read from B as stored
        // With few row panels each B panel is used by every row panel while in L1 (columns outer); otherwise A's
        // panels stay in L1 while the block's B panels stream from L2 (rows outer).
        bool columnsOuter = (j.DirectB || j.PanelB) && j.MPanels <= DirectBMaxPanels;
        for (int pc = 0; pc < j.K; pc += kcMax)
        {
            int kc = Math.Min(kcMax, j.K - pc);
            float* bsrc = j.TransB ? j.B + n0 * j.Ldb + pc : j.B + pc * j.Ldb + n0;
            long panelStride = (long)nr * kc; // from one packed panel to the next
            if (j.PanelB)
            {
                // A PackedMatrix: depth block pc of panel q is the kc×NR block at B + q·K·NR + pc·NR, read in place.
                panelStride = (long)j.K * nr;
                bp = j.B + n0 / nr * panelStride + (long)pc * nr;
            }
            else if (j.SharedB)
            {
                bp = _packedA + j.PackedB + (long)pc * ((j.N + nr - 1) / nr * nr) + (long)n0 * kc;
            }
            else if (j.DirectB)
            {
                // Only a last, partial panel is packed (zero-padded), into the worker's buffer.
                bp = _packedB[worker];
                if (cols > directPanels * nr)
                    Packing.PackB(bsrc + directPanels * nr, j.Ldb, false, cols - directPanels * nr, kc, nr, bp);
            }
            else if (j.DecodeB != null)
            {
                bp = _packedB[worker];
                DecodePanels(ref j, n0, cols, pc, kc, bp, worker);
            }
            else
            {
                bp = _packedB[worker];
                Packing.PackB(bsrc, j.Ldb, j.TransB, cols, kc, nr, bp);
            }
            float beta = pc == 0 ? j.Beta : 1f;
            float* bias = pc + kc >= j.K && j.Bias != null ? j.Bias + n0 : null; // the block's columns' bias, after the last depth block
            if (columnsOuter)
            {
                // Full panels of a row-major B are read where they are stored; the rest (a packed last panel, or a
                // PackedMatrix's panels) are kc×NR blocks panelStride apart.
                for (int q = 0; q < nPanels; q++)
                    for (int p = p0; p < p1; p++)
                    {
                        float* ap = APanel(ref j, p, pc, kc, out nint rsa, out nint csa);
                        Tile(ref j, kernel, kc, ap, rsa, csa, q < directPanels ? bsrc + q * nr : bp + (q - directPanels) * panelStride,
                            q < directPanels ? j.Ldb : nr, tile, p * mr, n0, q, beta, bias);
                    }
            }
            else
            {
                for (int p = p0; p < p1; p++)
                {
                    float* ap = APanel(ref j, p, pc, kc, out nint rsa, out nint csa);
                    for (int q = 0; q < nPanels; q++)
                        Tile(ref j, kernel, kc, ap, rsa, csa, q < directPanels ? bsrc + q * nr : bp + (q - directPanels) * panelStride,
                            q < directPanels ? j.Ldb : nr, tile, p * mr, n0, q, beta, bias);
                }
            }
        }
    }

    /// <summary>
    /// Row panel <paramref name="p"/>'s A at depth block <paramref name="pc"/>, and its strides for the kernel: a direct
    /// job's full panels where A is stored (a transposed A: rows 1 and depth steps Lda apart; a row-major A: rows Lda
    /// and depth steps 1 apart), every other panel packed (rows 1 and depth steps MR apart; a direct job's buffer holds
    /// its partial last panel alone).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private float* APanel(ref GemmJob j, int p, int pc, int kc, out nint rsa, out nint csa)
    {
        int mr = _k.Mr;
        if (j.DirectA && p < j.M / mr)
        {
            (rsa, csa) = j.TransA ? (1, j.Lda) : (j.Lda, (nint)1);
            return j.TransA ? j.A + pc * j.Lda + p * mr : j.A + p * mr * j.Lda + pc;
        }
        (rsa, csa) = (1, mr);
        return j.DirectA ? _packedA + j.PackedA + (long)pc * mr : _packedA + j.PackedA + (long)pc * j.MPanels * mr + (long)p * mr * kc;
    }

    /// <summary>
    /// One MR×NR tile of C (rows row.., columns n0 + q·NR..): straight into C when whole, else through the scratch tile;
    /// then <paramref name="bias"/> (the column block's, or null) is added to its rows while they are in L1.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Tile(ref GemmJob j, delegate*<int, float*, nint, nint, float*, nint, float*, nint, float, float, void> kernel, int kc, float* ap,
        nint rsa, nint csa, float* bq, nint ldb, float* tile, int row, int n0, int q, float beta, float* bias)
    {
        int mr = _k.Mr, nr = _k.Nr;
        int h = Math.Min(mr, j.M - row), w = Math.Min(nr, Math.Min(j.ColumnBlock, j.N - n0) - q * nr);
        if (j.TransposedC)
        {
            kernel(kc, ap, rsa, csa, bq, ldb, tile, nr, j.Alpha, 0f);
            MergeTileTransposed(tile, nr, j.C + (n0 + q * nr) * j.Ldc + row, j.Ldc, h, w, beta);
        }
        else if (h == mr && w == nr)
        {
            kernel(kc, ap, rsa, csa, bq, ldb, j.C + row * j.Ldc + n0 + q * nr, j.Ldc, j.Alpha, beta);
        }
        else
        {
            kernel(kc, ap, rsa, csa, bq, ldb, tile, nr, j.Alpha, 0f);
            MergeTile(tile, nr, j.C + row * j.Ldc + n0 + q * nr, j.Ldc, h, w, beta);
        }
        if (bias is not null && !j.TransposedC) AddBias(j.C + row * j.Ldc + n0 + q * nr, j.Ldc, bias + q * nr, h, w);
    }

    /// <summary>c[i, 0..w) += bias[0..w) for i &lt; h: a tile's rows, a few vectors each (no library call per row).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddBias(float* c, nint ldc, float* bias, int h, int w)
    {
        for (int i = 0; i < h; i++, c += ldc)
        {
            int k = 0;
            if (Vector512.IsHardwareAccelerated)
                for (; k + 16 <= w; k += 16) Vector512.Store(Vector512.Load(c + k) + Vector512.Load(bias + k), c + k);
            if (Vector256.IsHardwareAccelerated)
                for (; k + 8 <= w; k += 8) Vector256.Store(Vector256.Load(c + k) + Vector256.Load(bias + k), c + k);
            for (; k < w; k++) c[k] += bias[k];
        }
    }

    /// <summary>Cᵀ[h×w] = tile + β·Cᵀ: tile element (i, j) lands at c[j·ldc + i] (a transposed job's output).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MergeTileTransposed(float* tile, int nr, float* c, nint ldc, int h, int w, float beta)
    {
        for (int jj = 0; jj < w; jj++)
        {
            float* dst = c + jj * ldc;
            if (beta == 0f)
                for (int i = 0; i < h; i++) dst[i] = tile[i * nr + jj];
            else
                for (int i = 0; i < h; i++) dst[i] = tile[i * nr + jj] + beta * dst[i];
        }
    }

    /// <summary>C[h×w] = tile + β·C for an edge tile.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MergeTile(float* tile, int nr, float* c, nint ldc, int h, int w, float beta)
    {
        for (int i = 0; i < h; i++)
        {
            var src = new ReadOnlySpan<float>(tile + i * nr, w);
            var dst = new Span<float>(c + i * ldc, w);
            if (beta == 0f) src.CopyTo(dst);
            else TensorPrimitives.MultiplyAdd(dst, beta, src, dst);
        }
    }

    private static void ScaleC(float* c, int m, int n, nint ldc, float beta)
    {
        for (int i = 0; i < m; i++)
        {
            var row = new Span<float>(c + i * ldc, n);
            if (beta == 0f) row.Clear();
            else TensorPrimitives.Multiply(row, beta, row);
        }
    }

    private void EnsurePackedA(long floats)
    {
        if (floats <= _packedACap) return;
        SgemmDriver.Free(ref _packedA);
        long cap = Math.Max(floats, Math.Min(PackedACapFloats, _packedACap * 2));
        _packedA = SgemmDriver.Alloc(cap);
        _packedACap = cap;
    }

    public void Dispose()
    {
        SgemmDriver.Free(ref _packedA);
        for (int w = 0; w < _packedB.Length; w++)
        {
            SgemmDriver.Free(ref _packedB[w]);
            SgemmDriver.Free(ref _decodeRows[w]);
            SgemmDriver.Free(ref _tile[w]);
            SgemmDriver.Free(ref _vector[w]);
        }
    }
}

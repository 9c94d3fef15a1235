using LoraRuntime.Cpu.Gemm;
using LoraRuntime.Quantization;

namespace LoraRuntime.Cpu.Quantized;

/// <summary>
/// The CPU's products with a stored weight (<see cref="Backend.GemmQuantized"/>). Inference products with a Q8_0 or
/// Q4_0 weight (<see cref="ActivationPrecision.Q8_0"/>) or a BF16 one (<see cref="ActivationPrecision.BFloat16"/>) of
/// several rows run generated kernels (<see cref="GeneratedProduct"/>: AVX-512 VNNI, AVX-512 BF16) where the CPU has
/// them, else A rounded to the values those kernels multiply, through the products below. A few rows (decode) take each weight row once through <see cref="QuantizedDot"/>, in parallel over the
/// weight's rows: the weight streams from memory in its stored bytes, which is what sets a decode step's speed. More
/// rows run the packed float32 GEMM with W's panels decoded by the GEMM's own tasks
/// (<see cref="Gemm.SgemmDriver.RunDecoded"/>): each task decodes the depth block of the panels it multiplies into its
/// panel buffer, where the micro-kernel reads them at once, so the conversion is paid once however many rows share it,
/// in one parallel pass. The input gradient (op = W) and the K-quants (whose 256-value
/// blocks do not divide the depth block) decode W a chunk of rows at a time instead. Scratch is pooled per concurrent
/// caller and kept: a warm call allocates nothing.
/// </summary>
internal sealed unsafe class QuantizedGemm : IDisposable
{
    /// <summary>
    /// Products of at most this many rows use the row kernels; more decode chunks for the float GEMM. Measured on Zen 4
    /// (AVX2's byte multiply-add, no AVX-VNNI): at 32 rows the integer kernels took 141 / 114 ms (Q8_0 / Q4_0) for
    /// SmolLM2's prefill against 79 / 75 ms decoded into the float GEMM.
    /// </summary>
    internal const int RowKernelMaxRows = 8;

    /// <summary>
    /// Inference products of at least this many rows take the generated kernels where they run; fewer take the row
    /// kernels, which read each weight once with no panel to lay out. Measured on Zen 4 (SmolLM2-135M, a decode step of
    /// N rows): Q4_0 at 1 / 2 / 4 / 8 rows, row kernels 8.5 / 12.6 / 22 / 44 ms, generated 16.7 / 16.2 / 19 / 22 ms;
    /// BF16 at 4 / 5 / 6 / 8 rows, row kernels 21.6 / 27.2 / 31.8 / 40.9 ms, generated 28.4 / 29.2 / 32.1 / 33.9 ms.
    /// </summary>
    internal static int GeneratedKernelMinRows(WeightFormat format) => format == WeightFormat.BF16 ? 7 : 4;

    /// <summary>Floats of one decoded chunk (2 MiB: it stays in L2/L3 while the GEMM reads it).</summary>
    private const long ChunkFloats = 1L << 19;

    private readonly CpuBackend _backend;
    private readonly SgemmDriver _sgemm;
    private readonly CpuWorkerPool _workers;
    private readonly Lock _lock = new();
    private readonly Stack<Scratch> _idle = new();
    private readonly List<Scratch> _all = [];

    public QuantizedGemm(CpuBackend backend, SgemmDriver sgemm, CpuWorkerPool workers)
    {
        _backend = backend;
        _sgemm = sgemm;
        _workers = workers;
    }

    /// <summary>
    /// True where inference products with a <paramref name="format"/> W (Q8_0 and Q4_0: int8 with AVX-512 VNNI; BF16:
    /// AVX-512 BF16) of <see cref="GeneratedKernelMinRows"/> rows or more run generated kernels: the AVX-512 GEMM family,
    /// and the kernels run here.
    /// </summary>
    public bool UsesGeneratedKernels(WeightFormat format) => _sgemm.IsAvx512 && GeneratedProduct.IsSupported(format);

    /// <summary>C = α·A·op(W) + β·C, validated (m ≥ 1).</summary>
    public void Run(Transpose opW, int m, float alpha, Tensor a, long offsetA, int lda, QuantizedMatrix w, float beta, Tensor c, long offsetC, int ldc,
        ActivationPrecision activations)
    {
        bool forward = opW == Transpose.Yes;
        bool integer = forward && activations == ActivationPrecision.Q8_0 && w.Format is WeightFormat.Q8_0 or WeightFormat.Q4_0;
        bool bf16 = forward && activations == ActivationPrecision.BFloat16 && w.Format == WeightFormat.BF16;
        float* a0 = (float*)a.Pointer + offsetA, c0 = (float*)c.Pointer + offsetC;
        var scratch = Rent();
        try
        {
            if ((integer || bf16) && m >= GeneratedKernelMinRows(w.Format) && UsesGeneratedKernels(w.Format)) scratch.Generated.Run(m, alpha, a0, lda, w, beta, c0, ldc);
            else if (bf16) scratch.Bf16RoundedProduct(m, alpha, a0, lda, w, beta, c, offsetC, ldc);
            else if (forward && m <= RowKernelMaxRows) scratch.RowProduct(m, alpha, a0, lda, w, beta, c0, ldc, integer);
            else if (integer) scratch.RoundedProduct(m, alpha, a, offsetA, lda, w, beta, c, offsetC, ldc);
            else scratch.ChunkProduct(opW, m, alpha, a, offsetA, lda, w, beta, c, offsetC, ldc);
        }
        finally
        {
            lock (_lock) _idle.Push(scratch);
        }
    }

    /// <summary>Rows <paramref name="firstRow"/>… of <paramref name="w"/> decoded into <paramref name="destination"/>, in parallel.</summary>
    public void Decode(float* destination, QuantizedMatrix w, int firstRow, int rows)
    {
        var scratch = Rent();
        try
        {
            scratch.DecodeRows(destination, w, firstRow, rows);
        }
        finally
        {
            lock (_lock) _idle.Push(scratch);
        }
    }

    private Scratch Rent()
    {
        lock (_lock)
        {
            if (_idle.Count > 0) return _idle.Pop();
            var scratch = new Scratch(this);
            _all.Add(scratch);
            return scratch;
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var s in _all) s.Dispose();
            _all.Clear();
            _idle.Clear();
        }
    }

    /// <summary>One caller's buffers and parallel work items.</summary>
    private sealed class Scratch : IParallelWork, IDisposable
    {
        private readonly QuantizedGemm _owner;
        private readonly ScratchBuffer[] _rowBuffer; // per worker: decoded weight rows
        private ScratchBuffer _activations;
        private Tensor? _chunk;
        private Tensor? _rounded;
        private GeneratedProduct? _generated;
        private readonly GemmProblem[] _problem = new GemmProblem[1];

        // The current parallel job.
        private bool _decoding, _integerRows;
        private WeightFormat _format;
        private byte* _w;
        private long _rowBytes;
        private int _k, _rows, _m, _ldx, _ldc, _tasks, _panelWidth;
        private float* _x, _c, _decodeTo;
        private float _alpha, _beta;
        private Q8Activations _q;

        public Scratch(QuantizedGemm owner)
        {
            _owner = owner;
            _rowBuffer = new ScratchBuffer[owner._workers.ThreadCount];
        }

        /// <summary>The products of the generated kernels (<see cref="GeneratedProduct"/>), made on first use.</summary>
        public GeneratedProduct Generated => _generated ??= new GeneratedProduct(_owner._workers);

        /// <summary>
        /// C [m, N] = α·A [m, K]·Wᵀ + β·C for m ≤ <see cref="RowKernelMaxRows"/>: parallel over W's rows; a Q8_0 or Q4_0 W
        /// against A quantized to Q8_0 with <paramref name="integer"/>, else against A as given.
        /// </summary>
        public void RowProduct(int m, float alpha, float* a, int lda, QuantizedMatrix w, float beta, float* c, int ldc, bool integer)
        {
            Prepare(w);
            _x = a;
            _c = c;
            (_m, _ldx, _ldc, _alpha, _beta, _decoding, _integerRows) = (m, lda, ldc, alpha, beta, false, integer);
            if (integer)
            {
                _q = Q8Activations.In((byte*)_activations.Reserve(Q8Activations.BytesFor(m, _k)), m, _k);
                _q.Quantize(a, lda, 0, m, Int8Panel.Offset(w.Format));
            }
            // A few tasks per thread, each a run of rows; tiny products stay on the calling thread.
            long work = (long)m * _rows * _k;
            int threads = _owner._workers.ThreadCount;
            _tasks = work < Workspace.MinParallelFlops / 2 ? 1 : Math.Min(_rows, 4 * threads);
            _owner._workers.Run(this, _tasks);
        }

        /// <summary>
        /// C = α·A·op(W) + β·C a chunk of W's rows at a time: decode the chunk (in parallel), then the float GEMM with it
        /// (C's columns of the chunk for op = Yes; for No the chunk is a slice of the depth, accumulated into C).
        /// </summary>
        public void ChunkProduct(Transpose opW, int m, float alpha, Tensor a, long offsetA, int lda, QuantizedMatrix w, float beta,
            Tensor c, long offsetC, int ldc)
        {
            if (opW == Transpose.Yes && _owner._sgemm.SupportsDecoding(w.Format))
            {
                // The forward product: each GEMM task decodes the depth block of the panels it multiplies, in L1/L2, one pass.
                _problem[0] = new GemmProblem
                {
                    TransA = Transpose.No, TransB = Transpose.Yes, M = m, N = w.Rows, K = w.Columns, Alpha = alpha, Beta = beta,
                    A = a, OffsetA = offsetA, Lda = lda, B = a, OffsetB = 0, Ldb = w.Columns, C = c, OffsetC = offsetC, Ldc = ldc,
                };
                _owner._sgemm.RunDecoded(_problem[0], w);
                _problem[0] = default;
                return;
            }
            int k = w.Columns, nr = _owner._sgemm.PanelWidth;
            int chunkRows = (int)Math.Clamp(ChunkFloats / k, 1, w.Rows);
            if (opW == Transpose.Yes) chunkRows = Math.Max(nr, chunkRows / nr * nr); // whole panels
            long floats = (long)(chunkRows + nr) * k;
            if (_chunk is null || _chunk.Length < floats)
            {
                _chunk?.Dispose();
                _chunk = _owner._backend.Allocate(DType.F32, new Shape(checked((int)floats)));
            }
            for (int r0 = 0; r0 < w.Rows; r0 += chunkRows)
            {
                int rows = Math.Min(chunkRows, w.Rows - r0);
                if (opW == Transpose.Yes)
                {
                    // B = chunkᵀ [K, rows], decoded straight into the micro-kernel's panels (NR rows of W each, K × NR
                    // contiguous): the packed GEMM streams them as a packed weight's, with no second packing.
                    DecodePanels((float*)_chunk.Pointer, w, r0, rows, nr);
                    _problem[0] = new GemmProblem
                    {
                        TransA = Transpose.No, TransB = Transpose.No, M = m, N = rows, K = k, Alpha = alpha, Beta = beta,
                        A = a, OffsetA = offsetA, Lda = lda, B = _chunk, OffsetB = 0, Ldb = rows, C = c, OffsetC = offsetC + r0, Ldc = ldc,
                    };
                    _owner._sgemm.RunPanels(_problem[0]);
                    continue;
                }
                DecodeRows((float*)_chunk.Pointer, w, r0, rows);
                // C (m × K) = α·A[:, r0..] (m × rows) · chunk (rows × K) + (β first, then 1)·C
                _problem[0] = new GemmProblem
                {
                    TransA = Transpose.No, TransB = Transpose.No, M = m, N = k, K = rows, Alpha = alpha, Beta = r0 == 0 ? beta : 1f,
                    A = a, OffsetA = offsetA + r0, Lda = lda, B = _chunk, OffsetB = 0, Ldb = k, C = c, OffsetC = offsetC, Ldc = ldc,
                };
                _owner._sgemm.Run(_problem, 1, 0, 0, 0);
            }
            _problem[0] = default; // no tensor kept alive past the call
        }

        /// <summary>
        /// The integer product's values where its kernels do not run: A rounded through Q8_0 block by block (the values
        /// the integer kernels multiply) into a pooled copy, then the float product with W decoded.
        /// </summary>
        public void RoundedProduct(int m, float alpha, Tensor a, long offsetA, int lda, QuantizedMatrix w, float beta, Tensor c, long offsetC, int ldc)
        {
            int k = w.Columns;
            var copy = RoundedCopy((long)m * k);
            float* x = (float*)a.Pointer + offsetA, rounded = (float*)copy.Pointer;
            sbyte* q = stackalloc sbyte[QuantBlocks.BlockSize];
            for (int i = 0; i < m; i++)
                for (int b = 0; b < k; b += QuantBlocks.BlockSize)
                {
                    Q8Activations.QuantizeBlock(x + (long)i * lda + b, q, out float scale);
                    for (int j = 0; j < QuantBlocks.BlockSize; j++) rounded[(long)i * k + b + j] = q[j] * scale;
                }
            ChunkProduct(Transpose.Yes, m, alpha, copy, 0, k, w, beta, c, offsetC, ldc);
        }

        /// <summary>
        /// The BF16 inference product where its kernels do not run (or for a few rows): A rounded through bfloat16 into
        /// a pooled copy, then the row kernels (a few rows) or the float product with W's panels decoded.
        /// </summary>
        public void Bf16RoundedProduct(int m, float alpha, float* a, int lda, QuantizedMatrix w, float beta, Tensor c, long offsetC, int ldc)
        {
            int k = w.Columns;
            var rounded = RoundedCopy((long)m * k);
            Bf16Activations.RoundToSingle(a, lda, m, k, (float*)rounded.Pointer);
            if (m <= RowKernelMaxRows) RowProduct(m, alpha, (float*)rounded.Pointer, k, w, beta, (float*)c.Pointer + offsetC, ldc, integer: false);
            else ChunkProduct(Transpose.Yes, m, alpha, rounded, 0, k, w, beta, c, offsetC, ldc);
        }

        /// <summary>The pooled float32 buffer of at least <paramref name="floats"/> that the rounded products copy A into.</summary>
        private Tensor RoundedCopy(long floats)
        {
            if (_rounded is null || _rounded.Length < floats)
            {
                _rounded?.Dispose();
                _rounded = _owner._backend.Allocate(DType.F32, new Shape(checked((int)floats)));
            }
            return _rounded;
        }

        /// <summary>Decodes rows of W into panels of <paramref name="nr"/> rows (each K × NR, zero-padded), in parallel over the panels.</summary>
        private void DecodePanels(float* destination, QuantizedMatrix w, int firstRow, int rows, int nr)
        {
            Prepare(w);
            _w += firstRow * _rowBytes;
            _decodeTo = destination;
            (_rows, _decoding, _panelWidth) = (rows, true, nr);
            int panels = (rows + nr - 1) / nr;
            _tasks = (long)rows * _k < Primitives.ParallelPlan.MinParallelElements ? 1 : Math.Min(panels, 4 * _owner._workers.ThreadCount);
            _owner._workers.Run(this, _tasks);
            _panelWidth = 0;
        }

        /// <summary>Decodes rows of W into a contiguous float block, in parallel over the rows.</summary>
        public void DecodeRows(float* destination, QuantizedMatrix w, int firstRow, int rows)
        {
            Prepare(w);
            _w += firstRow * _rowBytes;
            _decodeTo = destination;
            (_rows, _decoding) = (rows, true);
            long floats = (long)rows * _k;
            _tasks = floats < Primitives.ParallelPlan.MinParallelElements ? 1 : Math.Min(rows, 4 * _owner._workers.ThreadCount);
            _owner._workers.Run(this, _tasks);
        }

        private void Prepare(QuantizedMatrix w)
        {
            _w = (byte*)w.Storage.Pointer;
            (_format, _rowBytes, _k, _rows) = (w.Format, w.RowBytes, w.Columns, w.Rows);
        }

        public void Execute(int task, int worker)
        {
            if (_decoding && _panelWidth > 0)
            {
                int nr = _panelWidth, panels = (_rows + nr - 1) / nr;
                float* rowsOfPanel = RowBuffer(worker, nr * _k);
                for (int p = (int)((long)panels * task / _tasks), last = (int)((long)panels * (task + 1) / _tasks); p < last; p++)
                {
                    int first = p * nr, count = Math.Min(nr, _rows - first);
                    for (int r = 0; r < count; r++) WeightRows.Decode(_format, _w + (first + r) * _rowBytes, rowsOfPanel + (long)r * _k, _k);
                    Gemm.Packing.PackB(rowsOfPanel, _k, trans: true, count, _k, nr, _decodeTo + (long)p * nr * _k);
                }
                return;
            }
            int start = (int)((long)_rows * task / _tasks), end = (int)((long)_rows * (task + 1) / _tasks);
            if (_decoding)
            {
                for (int r = start; r < end; r++) WeightRows.Decode(_format, _w + r * _rowBytes, _decodeTo + (long)r * _k, _k);
                return;
            }
            float* buffer = RowBuffer(worker, _k);
            float* sums = stackalloc float[QuantizedDot.MaxRows];
            for (int j = start; j < end; j++)
            {
                byte* row = _w + j * _rowBytes;
                for (int i0 = 0; i0 < _m; i0 += QuantizedDot.MaxRows)
                {
                    int rows = Math.Min(QuantizedDot.MaxRows, _m - i0);
                    var q = _integerRows ? _q.FromRow(i0) : default;
                    QuantizedDot.Row(_format, _integerRows, row, _k, _x + (long)i0 * _ldx, _ldx, q, rows, buffer, sums);
                    for (int i = 0; i < rows; i++)
                    {
                        float* y = _c + (long)(i0 + i) * _ldc + j;
                        *y = _beta == 0f ? _alpha * sums[i] : _alpha * sums[i] + _beta * *y;
                    }
                }
            }
        }

        private float* RowBuffer(int worker, int floats) => (float*)_rowBuffer[worker].Reserve((long)floats * sizeof(float));

        public void Dispose()
        {
            for (int i = 0; i < _rowBuffer.Length; i++) _rowBuffer[i].Free();
            _activations.Free();
            _chunk?.Dispose();
            _chunk = null;
            _rounded?.Dispose();
            _rounded = null;
            _generated?.Dispose();
            _generated = null;
        }
    }
}

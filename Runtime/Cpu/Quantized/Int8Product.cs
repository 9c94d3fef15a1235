using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using LoraRuntime.Cpu.Gemm;
using LoraRuntime.Quantization;

namespace LoraRuntime.Cpu.Quantized;

/// <summary>
/// C [m, N] = α·Q8_0(A)·Wᵀ + β·C for a Q8_0 or Q4_0 W with the generated VNNI kernels (<see cref="Int8Kernels"/>):
/// A's rows quantized per block (in parallel over rows), then W's rows shared out among tasks a tile of 32 at a time;
/// a task lays its tile out as a panel (<see cref="Int8Panel"/>: the stored blocks transposed in registers, once per
/// tile however many rows multiply it) and runs the kernel over A six rows at a time. Buffers grow to the largest call
/// and are kept: a warm call allocates nothing.
/// </summary>
internal sealed unsafe class Int8Product : IParallelWork, IDisposable
{
    private readonly CpuWorkerPool _workers;
    private readonly byte*[] _panel;      // per worker: one tile's panel
    private readonly long[] _panelBytes;
    private readonly float*[] _tile;      // per worker: the kernel's [6, 32] output
    private void* _quants; // sbyte [m, K]
    private long _quantBytes;
    private void* _meta;   // (int, float) [m, K / 32]
    private long _metaBytes;

    // The current call.
    private bool _quantizing;
    private float* _a, _c;
    private int _lda, _ldc, _m, _n, _k, _blocks, _tiles, _tasks, _offset;
    private float _alpha, _beta;
    private WeightFormat _format;
    private byte* _w;
    private long _rowBytes;

    public Int8Product(CpuWorkerPool workers)
    {
        _workers = workers;
        _panel = new byte*[workers.ThreadCount];
        _panelBytes = new long[workers.ThreadCount];
        _tile = new float*[workers.ThreadCount];
    }

    /// <summary>True where the product runs here (see <see cref="Int8Kernels.IsSupported"/>).</summary>
    public static bool IsSupported => Int8Kernels.IsSupported && Int8Panel.IsSupported;

    public void Run(int m, float alpha, float* a, int lda, QuantizedMatrix w, float beta, float* c, int ldc)
    {
        (_m, _n, _k, _lda, _ldc, _alpha, _beta) = (m, w.Rows, w.Columns, lda, ldc, alpha, beta);
        (_format, _rowBytes, _blocks, _offset) = (w.Format, w.RowBytes, w.Columns / QuantBlocks.BlockSize, Int8Panel.Offset(w.Format));
        _a = a;
        _c = c;
        _w = (byte*)w.Storage.Pointer;
        Reserve(ref _quants, ref _quantBytes, (long)m * _k);
        Reserve(ref _meta, ref _metaBytes, (long)m * _blocks * Int8Kernels.MetaBytes);
        int threads = _workers.ThreadCount;

        // A quantized, in parallel over its rows when there are many.
        _quantizing = true;
        _tasks = (long)m * _k < Primitives.ParallelPlan.MinParallelElements ? 1 : Math.Min(m, 4 * threads);
        _workers.Run(this, _tasks);
        _quantizing = false;

        _tiles = (_n + Int8Kernels.TileColumns - 1) / Int8Kernels.TileColumns;
        _tasks = 2.0 * m * _n * _k < Workspace.MinParallelFlops ? 1 : Math.Min(_tiles, 4 * threads);
        _workers.Run(this, _tasks);
        _a = _c = null;
        _w = null;
    }

    public void Execute(int task, int worker)
    {
        if (_quantizing)
        {
            int first = (int)((long)_m * task / _tasks), end = (int)((long)_m * (task + 1) / _tasks);
            Q8Activations.QuantizeForKernels(_a, _lda, first, end, _k, _offset, (sbyte*)_quants, (byte*)_meta);
            return;
        }
        long panelBytes = (long)_blocks * Int8Kernels.PanelBlockBytes;
        if (_panelBytes[worker] < panelBytes)
        {
            if (_panel[worker] != null) NativeMemory.AlignedFree(_panel[worker]);
            _panel[worker] = (byte*)NativeMemory.AlignedAlloc((nuint)panelBytes, 64);
            _panelBytes[worker] = panelBytes;
        }
        if (_tile[worker] == null) _tile[worker] = (float*)NativeMemory.AlignedAlloc(Int8Kernels.MaxRows * Int8Kernels.TileColumns * sizeof(float), 64);
        byte* panel = _panel[worker];
        float* tile = _tile[worker];
        long ldMeta = (long)_blocks * Int8Kernels.MetaBytes;
        var args = new Int8KernelArgs { Lda = _k, LdMeta = ldMeta, Panel = panel, Blocks = _blocks, Output = tile };
        for (int t = (int)((long)_tiles * task / _tasks), last = (int)((long)_tiles * (task + 1) / _tasks); t < last; t++)
        {
            int n0 = t * Int8Kernels.TileColumns, columns = Math.Min(Int8Kernels.TileColumns, _n - n0);
            Int8Panel.Pack(_format, _w, _rowBytes, _n, n0, _blocks, panel);
            for (int m0 = 0; m0 < _m; m0 += Int8Kernels.MaxRows)
            {
                int rows = Math.Min(Int8Kernels.MaxRows, _m - m0);
                args.A = (sbyte*)_quants + (long)m0 * _k;
                args.A3 = args.A + 3L * _k;
                args.Meta = (byte*)_meta + m0 * ldMeta;
                args.Meta3 = args.Meta + 3 * ldMeta;
                Int8Kernels.Run(rows, &args);
                Store(tile, rows, columns, _c + (long)m0 * _ldc + n0);
            }
        }
    }

    /// <summary>C's rows × columns at <paramref name="c"/> = α·tile + β·C (C not read where β = 0).</summary>
    private void Store(float* tile, int rows, int columns, float* c)
    {
        var alpha = Vector512.Create(_alpha);
        var beta = Vector512.Create(_beta);
        for (int i = 0; i < rows; i++)
        {
            float* y = c + (long)i * _ldc, t = tile + i * Int8Kernels.TileColumns;
            int j = 0;
            for (; j + 16 <= columns; j += 16)
            {
                var v = alpha * Vector512.Load(t + j);
                (_beta == 0f ? v : v + beta * Vector512.Load(y + j)).Store(y + j);
            }
            for (; j < columns; j++) y[j] = _beta == 0f ? _alpha * t[j] : _alpha * t[j] + _beta * y[j];
        }
    }

    private static void Reserve(ref void* buffer, ref long bytes, long need)
    {
        if (need <= bytes) return;
        if (buffer != null) NativeMemory.AlignedFree(buffer);
        buffer = NativeMemory.AlignedAlloc((nuint)need, 64);
        bytes = need;
    }

    public void Dispose()
    {
        for (int i = 0; i < _panel.Length; i++)
        {
            if (_panel[i] != null) NativeMemory.AlignedFree(_panel[i]);
            if (_tile[i] != null) NativeMemory.AlignedFree(_tile[i]);
            _panel[i] = null;
            _tile[i] = null;
            _panelBytes[i] = 0;
        }
        if (_quants != null) NativeMemory.AlignedFree(_quants);
        if (_meta != null) NativeMemory.AlignedFree(_meta);
        _quants = null;
        _meta = null;
        _quantBytes = _metaBytes = 0;
    }
}

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
    private readonly ScratchBuffer[] _panel; // per worker: one tile's panel
    private readonly ScratchBuffer[] _tile;  // per worker: the kernel's [6, 32] output
    private ScratchBuffer _activations;

    // The current call.
    private bool _quantizing;
    private float* _a, _c;
    private int _lda, _ldc, _m, _n, _k, _blocks, _tiles, _tasks, _offset;
    private Q8Activations _q;
    private float _alpha, _beta;
    private WeightFormat _format;
    private byte* _w;
    private long _rowBytes;

    public Int8Product(CpuWorkerPool workers)
    {
        _workers = workers;
        _panel = new ScratchBuffer[workers.ThreadCount];
        _tile = new ScratchBuffer[workers.ThreadCount];
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
        _q = Q8Activations.In((byte*)_activations.Reserve(Q8Activations.BytesFor(m, _k)), m, _k);
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
            _q.Quantize(_a, _lda, first, end, _offset);
            return;
        }
        byte* panel = (byte*)_panel[worker].Reserve((long)_blocks * Int8Kernels.PanelBlockBytes);
        float* tile = (float*)_tile[worker].Reserve(Int8Kernels.MaxRows * Int8Kernels.TileColumns * sizeof(float));
        long ldMeta = _q.MetaStride;
        var args = new Int8KernelArgs { Lda = _k, LdMeta = ldMeta, Panel = panel, Blocks = _blocks, Output = tile };
        for (int t = (int)((long)_tiles * task / _tasks), last = (int)((long)_tiles * (task + 1) / _tasks); t < last; t++)
        {
            int n0 = t * Int8Kernels.TileColumns, columns = Math.Min(Int8Kernels.TileColumns, _n - n0);
            Int8Panel.Pack(_format, _w, _rowBytes, _n, n0, _blocks, panel);
            for (int m0 = 0; m0 < _m; m0 += Int8Kernels.MaxRows)
            {
                int rows = Math.Min(Int8Kernels.MaxRows, _m - m0);
                var rows0 = _q.FromRow(m0);
                args.A = rows0.Quants;
                args.A3 = args.A + 3L * _k;
                args.Meta = rows0.Meta;
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

    public void Dispose()
    {
        for (int i = 0; i < _panel.Length; i++)
        {
            _panel[i].Free();
            _tile[i].Free();
        }
        _activations.Free();
    }
}

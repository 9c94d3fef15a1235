using System.Runtime.Intrinsics;
using LoraRuntime.Cpu.Gemm;
using LoraRuntime.Quantization;

namespace LoraRuntime.Cpu.Quantized;

/// <summary>
/// C [m, N] = α·A′·Wᵀ + β·C with the generated kernels, A′ being A as the kernels take it: for a Q8_0 or Q4_0 W,
/// A quantized per block to Q8_0 and multiplied in int8 with AVX-512 VNNI (<see cref="Int8Kernels"/>); for a BF16 W, A
/// rounded to bfloat16 and multiplied with AVX-512 BF16 (<see cref="Bf16Kernels"/>). A's rows are converted first (in
/// parallel over rows), then W's rows are shared out among tasks a tile of 32 at a time; a task lays its tile out as a
/// panel (<see cref="Int8Panel"/>, <see cref="Bf16Panel"/>: the stored rows transposed in registers, once per tile
/// however many rows multiply it) and runs the kernel over A six rows at a time. Buffers grow to the largest call and
/// are kept: a warm call allocates nothing.
/// </summary>
internal sealed unsafe class GeneratedProduct : IParallelWork, IDisposable
{
    /// <summary>Weight rows of a tile and activation rows of a kernel call, the same for both kernel families.</summary>
    private const int TileColumns = Int8Kernels.TileColumns, MaxRows = Int8Kernels.MaxRows;

    private readonly CpuWorkerPool _workers;
    private readonly ScratchBuffer[] _panel; // per worker: one tile's panel
    private readonly ScratchBuffer[] _tile;  // per worker: the kernel's [6, 32] output
    private ScratchBuffer _activations;

    // The current call.
    private bool _converting, _bf16;
    private float* _a, _c;
    private int _lda, _ldc, _m, _n, _k, _blocks, _tiles, _tasks, _offset, _ldb;
    private Q8Activations _q;
    private ushort* _rounded;
    private float _alpha, _beta;
    private WeightFormat _format;
    private byte* _w;
    private long _rowBytes;

    public GeneratedProduct(CpuWorkerPool workers)
    {
        _workers = workers;
        _panel = new ScratchBuffer[workers.ThreadCount];
        _tile = new ScratchBuffer[workers.ThreadCount];
    }

    /// <summary>True where the products with a <paramref name="format"/> W run here (Q8_0, Q4_0: AVX-512 VNNI; BF16: AVX-512 BF16).</summary>
    public static bool IsSupported(WeightFormat format) => format switch
    {
        WeightFormat.Q8_0 or WeightFormat.Q4_0 => Int8Kernels.IsSupported && Int8Panel.IsSupported,
        WeightFormat.BF16 => Bf16Kernels.IsSupported,
        _ => false,
    };

    public void Run(int m, float alpha, float* a, int lda, QuantizedMatrix w, float beta, float* c, int ldc)
    {
        (_m, _n, _k, _lda, _ldc, _alpha, _beta) = (m, w.Rows, w.Columns, lda, ldc, alpha, beta);
        (_format, _rowBytes, _bf16) = (w.Format, w.RowBytes, w.Format == WeightFormat.BF16);
        _a = a;
        _c = c;
        _w = (byte*)w.Storage.Pointer;
        if (_bf16)
        {
            _blocks = Bf16Panel.Blocks(_k);
            _ldb = _blocks * Bf16Kernels.BlockDepths;
            _rounded = (ushort*)_activations.Reserve((long)m * _ldb * sizeof(ushort));
        }
        else
        {
            (_blocks, _offset) = (_k / QuantBlocks.BlockSize, Int8Panel.Offset(w.Format));
            _q = Q8Activations.In((byte*)_activations.Reserve(Q8Activations.BytesFor(m, _k)), m, _k);
        }
        int threads = _workers.ThreadCount;

        // A converted, in parallel over its rows when there are many.
        _converting = true;
        _tasks = (long)m * _k < Primitives.ParallelPlan.MinParallelElements ? 1 : Math.Min(m, 4 * threads);
        _workers.Run(this, _tasks);
        _converting = false;

        _tiles = (_n + TileColumns - 1) / TileColumns;
        _tasks = 2.0 * m * _n * _k < Workspace.MinParallelFlops ? 1 : Math.Min(_tiles, 4 * threads);
        _workers.Run(this, _tasks);
        _a = _c = null;
        _w = null;
        _rounded = null;
    }

    public void Execute(int task, int worker)
    {
        if (_converting)
        {
            int first = (int)((long)_m * task / _tasks), end = (int)((long)_m * (task + 1) / _tasks);
            if (_bf16) Bf16Activations.Round(_a, _lda, first, end, _k, _rounded, _ldb);
            else _q.Quantize(_a, _lda, first, end, _offset);
            return;
        }
        byte* panel = (byte*)_panel[worker].Reserve((long)_blocks * (_bf16 ? Bf16Kernels.PanelBlockBytes : Int8Kernels.PanelBlockBytes));
        float* tile = (float*)_tile[worker].Reserve(MaxRows * TileColumns * sizeof(float));
        long ldMeta = _q.MetaStride;
        var int8 = new Int8KernelArgs { Lda = _k, LdMeta = ldMeta, Panel = panel, Blocks = _blocks, Output = tile };
        var bf16 = new Bf16KernelArgs { Lda = (long)_ldb * sizeof(ushort), Panel = panel, Blocks = _blocks, Output = tile };
        for (int t = (int)((long)_tiles * task / _tasks), last = (int)((long)_tiles * (task + 1) / _tasks); t < last; t++)
        {
            int n0 = t * TileColumns, columns = Math.Min(TileColumns, _n - n0);
            if (_bf16) Bf16Panel.Pack((ushort*)_w, _k, _n, n0, panel);
            else Int8Panel.Pack(_format, _w, _rowBytes, _n, n0, _blocks, panel);
            for (int m0 = 0; m0 < _m; m0 += MaxRows)
            {
                int rows = Math.Min(MaxRows, _m - m0);
                if (_bf16)
                {
                    bf16.A = _rounded + (long)m0 * _ldb;
                    bf16.A3 = bf16.A + 3L * _ldb;
                    Bf16Kernels.Run(rows, &bf16);
                }
                else
                {
                    var rows0 = _q.FromRow(m0);
                    int8.A = rows0.Quants;
                    int8.A3 = int8.A + 3L * _k;
                    int8.Meta = rows0.Meta;
                    int8.Meta3 = int8.Meta + 3 * ldMeta;
                    Int8Kernels.Run(rows, &int8);
                }
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
            float* y = c + (long)i * _ldc, t = tile + i * TileColumns;
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

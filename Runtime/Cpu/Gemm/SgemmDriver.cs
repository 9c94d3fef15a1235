using System.Runtime.InteropServices;

namespace LoraRuntime.Cpu.Gemm;

/// <summary>
/// Runs validated float32 GEMM problems on the CPU: single, strided-batched and grouped calls all become a
/// list of jobs that one <see cref="Workspace"/> executes in two parallel phases (pack A, then compute).
/// Workspaces are pooled, so concurrent callers never share scratch memory and a warm call allocates nothing.
/// </summary>
internal sealed unsafe class SgemmDriver : IDisposable
{
    private readonly CpuWorkerPool _workers;
    private readonly GemmKernel _kernel;
    private readonly Lock _lock = new();
    private Workspace[] _idle = new Workspace[2];
    private int _idleCount;
    private Workspace[] _all = new Workspace[2];
    private int _allCount;

    public SgemmDriver(CpuWorkerPool workers, GemmKernelKind kind = GemmKernelKind.Auto)
    {
        _workers = workers;
        _kernel = GemmKernel.Create(kind);
    }

    /// <summary>True where the micro-kernel is the AVX-512 one (the family the generated integer kernels belong to).</summary>
    public bool IsAvx512 => _kernel.Kind == GemmKernelKind.Avx512;

    /// <summary>The micro-kernel in use, e.g. "Avx512 12x32".</summary>
    public string KernelName => $"{_kernel.Kind} {_kernel.Mr}x{_kernel.Nr}";

    /// <summary>Runs the problems; a <paramref name="bias"/> (one problem, one batch) is added to every row of C.</summary>
    public void Run(ReadOnlySpan<GemmProblem> problems, int batchCount, long strideA, long strideB, long strideC, float* bias = null)
    {
        Workspace ws = Rent();
        try
        {
            ws.Execute(problems, batchCount, strideA, strideB, strideC, bias);
        }
        finally
        {
            Return(ws);
        }
    }

    private void Return(Workspace ws)
    {
        lock (_lock)
        {
            if (_idleCount == _idle.Length) Array.Resize(ref _idle, _idle.Length * 2);
            _idle[_idleCount++] = ws;
        }
    }

    /// <summary>Columns per panel of a packed B: the micro-kernel's NR.</summary>
    public int PanelWidth => _kernel.Nr;

    /// <summary>One validated problem whose B is the panel storage of a <see cref="PackedMatrix"/> (see <see cref="Workspace.ExecutePanels"/>).</summary>
    public void RunPanels(in GemmProblem problem)
    {
        Workspace ws = Rent();
        try
        {
            ws.ExecutePanels(problem);
        }
        finally
        {
            Return(ws);
        }
    }

    /// <summary>True when <see cref="RunDecoded"/> takes weights of <paramref name="format"/> (whole blocks in every depth block).</summary>
    public bool SupportsDecoding(WeightFormat format) => _kernel.Kc % format.BlockValues() == 0;

    /// <summary>C = α·A·Wᵀ + β·C for a stored weight, its panels decoded by the tasks that use them (see <see cref="Workspace.ExecuteDecoded"/>).</summary>
    public void RunDecoded(in GemmProblem problem, QuantizedMatrix w)
    {
        Workspace ws = Rent();
        try
        {
            ws.ExecuteDecoded(problem, w);
        }
        finally
        {
            Return(ws);
        }
    }

    private Workspace Rent()
    {
        lock (_lock)
        {
            if (_idleCount > 0) return _idle[--_idleCount];
            var ws = new Workspace(_kernel, _workers);
            if (_allCount == _all.Length) Array.Resize(ref _all, _all.Length * 2);
            _all[_allCount++] = ws;
            return ws;
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            for (int i = 0; i < _allCount; i++) _all[i].Dispose();
            _allCount = _idleCount = 0;
        }
    }

    /// <summary>Frees native scratch memory.</summary>
    internal static void Free(ref float* p)
    {
        if (p != null) NativeMemory.AlignedFree(p);
        p = null;
    }

    /// <summary>A 64-byte-aligned native block of <paramref name="floats"/> floats.</summary>
    internal static float* Alloc(long floats) => (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);
}

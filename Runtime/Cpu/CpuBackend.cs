using System.Runtime.CompilerServices;
using X86 = System.Runtime.Intrinsics.X86;
using LoraRuntime.Cpu.Gemm;

namespace LoraRuntime.Cpu;

/// <summary>
/// The CPU backend: 64-byte-aligned pooled host memory, the packed SIMD GEMM, and fused element-wise
/// primitives over <c>System.Numerics.Tensors</c>. Thread-safe: concurrent callers share the worker pool when it
/// is free and otherwise run on their own thread.
/// </summary>
public sealed unsafe partial class CpuBackend : Backend
{
    private readonly SgemmDriver _gemm;
    private readonly Quantized.QuantizedGemm _quantized;
    private readonly Linalg.DgemmKernel _dgemmKernel;

    /// <summary>A CPU backend over the shared worker pool.</summary>
    public CpuBackend() : this(CpuWorkerPool.Shared) { }

    /// <summary>
    /// A CPU backend over <paramref name="workers"/> with a chosen GEMM micro-kernel (tests and benchmarks pin
    /// one; <see cref="GemmKernelKind.Auto"/> takes the widest this CPU supports).
    /// </summary>
    public CpuBackend(CpuWorkerPool workers, GemmKernelKind gemmKernel = GemmKernelKind.Auto) : base(new CpuMemoryPool())
    {
        Workers = workers;
        _gemm = new SgemmDriver(workers, gemmKernel);
        _quantized = new Quantized.QuantizedGemm(this, _gemm, workers);
        _dgemmKernel = Linalg.DgemmKernel.For(gemmKernel);
    }

    /// <summary>
    /// False runs attention through the backend's composed default (GEMMs and a softmax) instead of the fused kernels,
    /// so that the conformance suite checks both paths on this machine.
    /// </summary>
    internal bool FusedAttention { get; set; } = true;

    /// <summary>The threads the parallel operations run on.</summary>
    public CpuWorkerPool Workers { get; }

    /// <inheritdoc/>
    public override string Name => "cpu";

    /// <inheritdoc/>
    public override DeviceKind Kind => DeviceKind.Cpu;

    /// <inheritdoc/>
    public override bool IsHostMemory => true;

    /// <summary>Which GEMM micro-kernel runs (chosen from the CPU's features).</summary>
    public string GemmKernel => _gemm.KernelName;

    /// <summary>
    /// How inference products with Q8_0 and Q4_0 weights multiply (<see cref="ActivationPrecision.Q8_0"/>): the
    /// generated AVX-512 VNNI kernels, or the row kernels and the float product, with the reason.
    /// </summary>
    public string IntegerKernel => _quantized.UsesGeneratedKernels(WeightFormat.Q8_0)
        ? "generated AVX-512 VNNI 6x32"
        : $"row kernels ({(X86.AvxVnni.IsSupported ? "AVX-VNNI" : X86.Avx2.IsSupported ? "AVX2" : "scalar")}) and the float product; " +
          (_gemm.IsAvx512 ? Quantized.Int8Kernels.Unavailable : "the GEMM kernel is not AVX-512");

    /// <summary>
    /// How inference products with BF16 weights multiply (<see cref="ActivationPrecision.BFloat16"/>): the generated
    /// AVX-512 BF16 kernels, or the float product of A rounded to bfloat16, with the reason.
    /// </summary>
    public string Bf16Kernel => _quantized.UsesGeneratedKernels(WeightFormat.BF16)
        ? "generated AVX-512 BF16 6x32"
        : "the float product of bfloat16-rounded activations; " + (_gemm.IsAvx512 ? Quantized.Bf16Kernels.Unavailable : "the GEMM kernel is not AVX-512");

    /// <inheritdoc/>
    public override void Synchronize() { }

    /// <inheritdoc/>
    protected override void UploadCore(Tensor destination, ReadOnlySpan<byte> source) =>
        source.CopyTo(new Span<byte>((void*)destination.Pointer, source.Length));

    /// <inheritdoc/>
    protected override void DownloadCore(Tensor source, Span<byte> destination) =>
        new ReadOnlySpan<byte>((void*)source.Pointer, destination.Length).CopyTo(destination);

    /// <inheritdoc/>
    protected override void CopyCore(Tensor destination, Tensor source) =>
        Buffer.MemoryCopy((void*)source.Pointer, (void*)destination.Pointer, destination.ByteLength, source.ByteLength);

    /// <inheritdoc/>
    protected override void FillCore(Tensor destination, float value) =>
        Elementwise(new Primitives.FillOp { Output = (float*)destination.Pointer, Value = value }, destination.Length);

    /// <inheritdoc/>
    protected override void GemmCore(in GemmProblem problem) => _gemm.Run(new ReadOnlySpan<GemmProblem>(in problem), 1, 0, 0, 0);

    /// <summary>The bias is added to each C tile while it is in L1, right after the tile's last depth block.</summary>
    protected override void GemmAddBiasCore(in GemmProblem problem, Tensor bias) =>
        _gemm.Run(new ReadOnlySpan<GemmProblem>(in problem), 1, 0, 0, 0, F(bias));

    /// <inheritdoc/>
    protected override void GemmStridedBatchedCore(in GemmProblem problem, long strideA, long strideB, long strideC, int batchCount) =>
        _gemm.Run(new ReadOnlySpan<GemmProblem>(in problem), batchCount, strideA, strideB, strideC);

    /// <summary>Panels of the micro-kernel's NR columns, each K×NR floats contiguous, the last zero-padded.</summary>
    protected override PackedMatrix AllocatePackedCore(int k, int n)
    {
        int nr = _gemm.PanelWidth;
        return new PackedMatrix(Allocate(DType.F32, new Shape((n + nr - 1) / nr, k, nr)), k, n, nr);
    }

    /// <inheritdoc/>
    protected override void RepackCore(PackedMatrix destination, Tensor source, Transpose trans) =>
        Packing.PackB((float*)source.Pointer, source.Shape[1], trans == Transpose.Yes, destination.Columns, destination.Rows, destination.PanelWidth,
            (float*)destination.Storage.Pointer);

    /// <inheritdoc/>
    protected override void GemmPackedCore(in GemmProblem problem, PackedMatrix b) => _gemm.RunPanels(problem);

    /// <inheritdoc/>
    protected override void GemmGroupedCore(ReadOnlySpan<GemmProblem> problems) => _gemm.Run(problems, 1, 0, 0, 0);

    /// <summary>The float elements of a validated tensor, as a pointer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float* F(Tensor t) => (float*)t.Pointer;

    /// <inheritdoc/>
    public override void Dispose()
    {
        _quantized.Dispose();
        _gemm.Dispose();
        base.Dispose();
    }
}

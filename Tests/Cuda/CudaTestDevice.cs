using LoraRuntime.Cuda;
using Xunit;

namespace LoraRuntime.Tests.Cuda;

/// <summary>Whether the CUDA backend can run here.</summary>
internal static class CudaTestDevice
{
    /// <summary>Null when a GPU and cuBLAS, cuSOLVER and NVRTC are all there; otherwise why not.</summary>
    public static string? Problem =>
        !Devices.Probe.Available ? $"no GPU: {Devices.Probe.Reason}"
        : Devices.CudaLibrariesProblem is { } missing ? $"a GPU but {missing}"
        : null;

    /// <summary>Skips the calling test, with the reason, unless the CUDA backend can run.</summary>
    public static void SkipUnlessUsable()
    {
        string? problem = Problem;
        Assert.SkipUnless(problem is null, $"CUDA backend unavailable: {problem}");
    }
}

/// <summary>The GEMM conformance suite on the CUDA backend (cuBLAS, fp32).</summary>
/// <remarks>The backend is this class's alone, so that parallel test classes do not queue behind one another's lock.</remarks>
public sealed class CudaGemmConformance : Gemm.GemmConformance
{
    private static readonly Lazy<CudaBackend> s_backend = new(() => new CudaBackend(0));

    public CudaGemmConformance() => CudaTestDevice.SkipUnlessUsable();
    protected override Backend Backend => s_backend.Value;
}

/// <summary>The primitive conformance suite on the CUDA backend (the kernels of native/).</summary>
public sealed class CudaPrimitiveConformance : Primitives.PrimitiveConformance
{
    public CudaPrimitiveConformance() => CudaTestDevice.SkipUnlessUsable();
    protected override Backend CreateBackend() => new CudaBackend(0);
}

/// <summary>The linear-algebra conformance suite on the CUDA backend with the CPU's range finder for the truncated SVD.</summary>
public sealed class CudaSketchLinalgConformance : Linalg.LinalgConformance
{
    public CudaSketchLinalgConformance() => CudaTestDevice.SkipUnlessUsable();
    protected override Backend CreateBackend() => new CudaBackend(0) { TruncatedSvdMethod = CudaTruncatedSvdMethod.Sketch };
}

/// <summary>The linear-algebra conformance suite on the CUDA backend (cuSOLVER in float64).</summary>
public sealed class CudaLinalgConformance : Linalg.LinalgConformance
{
    public CudaLinalgConformance() => CudaTestDevice.SkipUnlessUsable();
    protected override Backend CreateBackend() => new CudaBackend(0);
}

/// <summary>The stored-weight products on the CUDA backend.</summary>
public sealed class CudaQuantizedGemmConformance : Quantization.QuantizedGemmConformance
{
    private static readonly Lazy<CudaBackend> s_backend = new(() => new CudaBackend(0));

    public CudaQuantizedGemmConformance() => CudaTestDevice.SkipUnlessUsable();
    protected override Backend Backend => s_backend.Value;
    protected override bool QuantizesActivations => false;
}

/// <summary>
/// The stored-weight products on CUDA with a decode buffer of 4 KiB: every W larger than that is decoded and multiplied
/// a block of rows at a time (one row at a time for the wider ones), which each product's chunks must add up to.
/// </summary>
public sealed class CudaChunkedQuantizedGemmConformance : Quantization.QuantizedGemmConformance
{
    private static readonly Lazy<CudaBackend> s_backend = new(() => new CudaBackend(0) { StoredWeightChunkBytes = 4096 });

    public CudaChunkedQuantizedGemmConformance() => CudaTestDevice.SkipUnlessUsable();
    protected override Backend Backend => s_backend.Value;
    protected override bool QuantizesActivations => false;
}

/// <summary>
/// The stored-weight products on CUDA's 16-bit tensor cores: BF16 weights multiplied as stored by cublasGemmEx (A
/// rounded to bfloat16), the other formats decoded to float32 and multiplied with bfloat16 inputs; held to 1e-2.
/// </summary>
public sealed class CudaSixteenBitQuantizedGemmConformance : Quantization.QuantizedGemmConformance
{
    private static readonly Lazy<CudaBackend> s_backend = new(() => new CudaBackend(0) { GemmPrecision = CudaGemmPrecision.Bf16 });

    public CudaSixteenBitQuantizedGemmConformance() => CudaTestDevice.SkipUnlessUsable();
    protected override Backend Backend => s_backend.Value;
    protected override bool QuantizesActivations => false;
    protected override double Tolerance => 1e-2;
}

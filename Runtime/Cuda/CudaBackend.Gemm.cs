using LoraRuntime.Interop;

namespace LoraRuntime.Cuda;

// The GEMM family through cuBLAS, each problem mapped to its column-major call by CublasGemmCall.
public sealed unsafe partial class CudaBackend
{
    private nint _blas;
    private nint _blasWorkspace;
    private int _blasWorkspaceClass;
    private bool _groupedUnsupported;

    /// <summary>How the GEMM family computes (float32 by default; TF32 and bf16 tensor cores for benchmarks).</summary>
    public CudaGemmPrecision GemmPrecision { get; set; } = CudaGemmPrecision.Fp32;

    /// <summary>
    /// Whether <see cref="Backend.GemmGrouped"/> uses cublasGemmGroupedBatchedEx where this cuBLAS has it (12.5 and later,
    /// float32 only); false runs one cublasGemmEx per problem. Both give the same result.
    /// </summary>
    public bool UseGroupedGemm { get; set; } = true;

    /// <summary>True when this cuBLAS exports cublasGemmGroupedBatchedEx.</summary>
    public static bool GroupedGemmAvailable => Cublas.GemmGroupedBatchedEx != null;

    private void CreateBlas()
    {
        nint handle;
        Cublas.ThrowIfFailed(Cublas.cublasCreate(&handle));
        _blas = handle;
        Cublas.ThrowIfFailed(Cublas.cublasSetStream(_blas, _stream));
        // An explicit workspace (32 MiB on Hopper, 4 MiB before) keeps cuBLAS from allocating during graph capture.
        long workspace = _device.Info.ComputeCapabilityMajor >= 9 ? 32L << 20 : 4L << 20;
        _blasWorkspace = Pool.Rent(workspace, out _blasWorkspaceClass);
        Cublas.ThrowIfFailed(Cublas.cublasSetWorkspace(_blas, _blasWorkspace, (nuint)workspace));
        Cublas.ThrowIfFailed(Cublas.cublasSetMathMode(_blas, cublasMath_t.CUBLAS_DEFAULT_MATH));
    }

    private void DestroyBlas()
    {
        if (_blas != 0) Cublas.cublasDestroy(_blas);
        _blas = 0;
        if (_blasWorkspace != 0) Pool.Return(_blasWorkspace, _blasWorkspaceClass);
        _blasWorkspace = 0;
    }

    private cublasComputeType_t ComputeType => GemmPrecision switch
    {
        CudaGemmPrecision.Tf32 => cublasComputeType_t.CUBLAS_COMPUTE_32F_FAST_TF32,
        CudaGemmPrecision.Bf16 => cublasComputeType_t.CUBLAS_COMPUTE_32F_FAST_16BF,
        _ => cublasComputeType_t.CUBLAS_COMPUTE_32F,
    };

    /// <inheritdoc/>
    protected override void GemmCore(in GemmProblem problem) => GemmStridedBatchedCore(problem, 0, 0, 0, 1);

    /// <inheritdoc/>
    protected override void GemmStridedBatchedCore(in GemmProblem p, long strideA, long strideB, long strideC, int batchCount)
    {
        if (p.M == 0 || p.N == 0) return;
        using var gate = Enter();
        if (p.K == 0)
        {
            // No product: C = β·C (β = 0 writes zeros), which cuBLAS's leading-dimension rules do not cover for K = 0.
            for (int i = 0; i < batchCount; i++) ScaleMatrix(p.C, p.OffsetC + i * strideC, p.M, p.N, p.Ldc, p.Beta);
            return;
        }
        float alpha = p.Alpha, beta = p.Beta;
        var call = CublasGemmCall.For(p);
        nint first = At(p.B, call.FirstOffset), second = At(p.A, call.SecondOffset), c = At(p.C, call.OffsetC);
        const cudaDataType F32 = cudaDataType.CUDA_R_32F;
        if (batchCount == 1)
            Cublas.ThrowIfFailed(Cublas.cublasGemmEx(_blas, call.TransA, call.TransB, call.M, call.N, call.K, &alpha, first, F32, call.Lda,
                second, F32, call.Ldb, &beta, c, F32, call.Ldc, ComputeType, Cublas.CUBLAS_GEMM_DEFAULT));
        else // the first operand is our B, the second our A: their strides swap places too
            Cublas.ThrowIfFailed(Cublas.cublasGemmStridedBatchedEx(_blas, call.TransA, call.TransB, call.M, call.N, call.K, &alpha, first, F32,
                call.Lda, strideB, second, F32, call.Ldb, strideA, &beta, c, F32, call.Ldc, strideC, batchCount, ComputeType,
                Cublas.CUBLAS_GEMM_DEFAULT));
    }

    /// <inheritdoc/>
    protected override void GemmGroupedCore(ReadOnlySpan<GemmProblem> problems)
    {
        using var gate = Enter();
        int products = 0;
        foreach (ref readonly var p in problems)
            if (p.M > 0 && p.N > 0 && p.K > 0) products++;
        if (UseGroupedGemm && !_groupedUnsupported && products > 1 && GemmPrecision == CudaGemmPrecision.Fp32 && GroupedGemmAvailable
            && TryGemmGroupedBatched(problems, products))
        {
            foreach (ref readonly var p in problems)
                if (p.K == 0 && p.M > 0 && p.N > 0) ScaleMatrix(p.C, p.OffsetC, p.M, p.N, p.Ldc, p.Beta);
            return;
        }
        foreach (ref readonly var p in problems) GemmStridedBatchedCore(p, 0, 0, 0, 1);
    }

    /// <summary>C = β·C over an M×N block of C with row stride ldc.</summary>
    private void ScaleMatrix(Tensor c, long offset, int rows, int cols, int ldc, float beta)
    {
        nint pointer = At(c, offset);
        long ld = ldc;
        void** args = stackalloc void*[] { &pointer, &rows, &cols, &ld, &beta };
        Launch(CudaKernel.ScaleMatrix, BlocksFor((long)rows * cols), args);
    }
}

using LoraRuntime.Interop;

namespace LoraRuntime.Cuda;

// Stored (16-bit and block-quantized) weights on the device: decoded there by dequantize.cu, never through the host.
public sealed unsafe partial class CudaBackend
{
    /// <summary>
    /// The most float32 bytes a stored-weight product decodes at once (64 MiB; at least one row): a larger W is
    /// multiplied a block of its rows at a time, so a 150k-token output head never needs its whole float32 copy.
    /// </summary>
    public long StoredWeightChunkBytes
    {
        get => _storedWeightChunkBytes;
        set => _storedWeightChunkBytes = value >= 4 ? value
            : throw new ArgumentOutOfRangeException(nameof(value), value, "StoredWeightChunkBytes: expected at least 4 bytes (one float)");
    }

    private long _storedWeightChunkBytes = 64L << 20;

    /// <inheritdoc/>
    protected override void DequantizeCore(Tensor destination, QuantizedMatrix source, int firstRow, int rows) =>
        DecodeRows(destination.Pointer, source, firstRow, rows, ids: 0);

    /// <inheritdoc/>
    protected override void EmbeddingForwardCore(Tensor output, Tensor ids, QuantizedMatrix table) =>
        DecodeRows(output.Pointer, table, 0, checked((int)ids.Length), ids.Pointer);

    /// <summary>
    /// Stored-weight products. With <see cref="CudaGemmPrecision.Bf16"/> (16-bit tensor cores) a BF16 W is multiplied
    /// as stored: A is rounded to bfloat16 and cublasGemmEx takes both 16-bit operands, summing in float32 (an F16 W is
    /// not: rounding A to half would lose float32's exponent range, so it is decoded like the rest and multiplied with
    /// bfloat16 inputs). Otherwise W is decoded on the device, a block of rows at a time (<see cref="StoredWeightChunkBytes"/>), into a
    /// pooled float32 buffer that the float GEMM multiplies at <see cref="GemmPrecision"/>; A is taken as given, so
    /// <see cref="ActivationPrecision.Q8_0"/> and <see cref="ActivationPrecision.BFloat16"/> change nothing here.
    /// </summary>
    protected override void GemmQuantizedCore(Transpose opW, int m, float alpha, Tensor a, long offsetA, int lda, QuantizedMatrix w,
        float beta, Tensor c, long offsetC, int ldc, ActivationPrecision activations)
    {
        int k = opW == Transpose.Yes ? w.Columns : w.Rows, n = opW == Transpose.Yes ? w.Rows : w.Columns;
        if (GemmPrecision == CudaGemmPrecision.Bf16 && w.Format == WeightFormat.BF16 && 2L * m * k <= int.MaxValue)
        {
            GemmBFloat16(opW, m, n, k, alpha, a, offsetA, lda, w, beta, c, offsetC, ldc);
            return;
        }
        using var gate = Enter();
        int chunk = (int)Math.Clamp(StoredWeightChunkBytes / (4L * w.Columns), 1, w.Rows);
        using var dense = Allocate(DType.F32, new Shape(chunk, w.Columns));
        for (int first = 0; first < w.Rows; first += chunk)
        {
            int rows = Math.Min(chunk, w.Rows - first);
            DecodeRows(dense.Pointer, w, first, rows, ids: 0);
            // W's rows first…first+rows are C's columns (y = x·Wᵀ) or A's columns (dx = dy·W), whose products add up.
            var problem = new GemmProblem
            {
                TransA = Transpose.No, TransB = opW, M = m, Alpha = alpha, A = a, Lda = lda, B = dense, OffsetB = 0, Ldb = w.Columns,
                C = c, Ldc = ldc,
            };
            if (opW == Transpose.Yes)
            {
                problem.N = rows; problem.K = k; problem.Beta = beta;
                problem.OffsetA = offsetA; problem.OffsetC = offsetC + first;
            }
            else
            {
                problem.N = n; problem.K = rows; problem.Beta = first == 0 ? beta : 1f;
                problem.OffsetA = offsetA + first; problem.OffsetC = offsetC;
            }
            GemmCore(problem);
        }
    }

    /// <summary>C = α·A·op(W) + β·C with a BF16 W as stored and A rounded to bfloat16: one cublasGemmEx, float32 sums.</summary>
    private void GemmBFloat16(Transpose opW, int m, int n, int k, float alpha, Tensor a, long offsetA, int lda, QuantizedMatrix w,
        float beta, Tensor c, long offsetC, int ldc)
    {
        using var gate = Enter();
        using var narrow = Allocate(DType.U8, new Shape(2 * m * k)); // the caller checked that it fits an int
        nint output = narrow.Pointer, input = At(a, offsetA);
        long ld = lda;
        void** args = stackalloc void*[] { &output, &input, &m, &k, &ld };
        Launch(CudaKernel.NarrowRowsBf16, BlocksFor((long)m * k), args);

        // The packed 16-bit A has row stride k; W's row stride is its columns.
        var call = CublasGemmCall.For(new GemmProblem
        {
            TransA = Transpose.No, TransB = opW, M = m, N = n, K = k, Alpha = alpha, Beta = beta,
            A = narrow, Lda = k, B = w.Storage, Ldb = w.Columns, C = c, OffsetC = offsetC, Ldc = ldc,
        });
        const cudaDataType type = cudaDataType.CUDA_R_16BF;
        Cublas.ThrowIfFailed(Cublas.cublasGemmEx(_blas, call.TransA, call.TransB, call.M, call.N, call.K, &alpha, w.Storage.Pointer, type,
            call.Lda, narrow.Pointer, type, call.Ldb, &beta, At(c, call.OffsetC), cudaDataType.CUDA_R_32F, call.Ldc,
            cublasComputeType_t.CUBLAS_COMPUTE_32F, Cublas.CUBLAS_GEMM_DEFAULT));
    }

    /// <summary>
    /// Float32 rows at <paramref name="destination"/> = rows of <paramref name="source"/> decoded: rows
    /// <paramref name="firstRow"/>… or, with <paramref name="ids"/> (a device int array of <paramref name="rows"/>), row ids[r].
    /// </summary>
    private void DecodeRows(nint destination, QuantizedMatrix source, int firstRow, int rows, nint ids)
    {
        using var gate = Enter();
        nint stored = source.Storage.Pointer;
        int columns = source.Columns, format = (int)source.Format;
        long rowBytes = source.RowBytes;
        void** args = stackalloc void*[] { &destination, &stored, &ids, &firstRow, &rows, &columns, &rowBytes, &format };
        Launch(CudaKernel.Dequantize, BlocksFor((long)rows * columns), args);
    }
}

using LoraRuntime.Interop;

namespace LoraRuntime.Cuda;

/// <summary>
/// The column-major cuBLAS GEMM that computes one row-major <see cref="GemmProblem"/>. The bytes of a row-major X with
/// row stride ld are the column-major Xᵀ with the same ld, so C = op(A)·op(B) becomes Cᵀ = op(B)ᵀ·op(A)ᵀ: cuBLAS gets
/// our B as its first operand and our A as its second, m = N, n = M, and each operand keeps its transpose flag.
/// Offsets are in elements of the operands' tensors (the caller adds them to the device addresses).
/// </summary>
internal readonly record struct CublasGemmCall(
    cublasOperation_t TransA, cublasOperation_t TransB, int M, int N, int K,
    long FirstOffset, int Lda, long SecondOffset, int Ldb, long OffsetC, int Ldc)
{
    /// <summary>The call for <paramref name="p"/> (M, N, K ≥ 1).</summary>
    public static CublasGemmCall For(in GemmProblem p) =>
        new(Op(p.TransB), Op(p.TransA), p.N, p.M, p.K, p.OffsetB, p.Ldb, p.OffsetA, p.Lda, p.OffsetC, p.Ldc);

    /// <summary>cuBLAS's flag for a transpose.</summary>
    public static cublasOperation_t Op(Transpose t) => t == Transpose.Yes ? cublasOperation_t.CUBLAS_OP_T : cublasOperation_t.CUBLAS_OP_N;
}

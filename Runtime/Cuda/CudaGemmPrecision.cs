namespace LoraRuntime.Cuda;

/// <summary>
/// How cuBLAS computes the float32 GEMM family. Storage stays float32 in every case; the faster modes round the inputs
/// for the tensor cores and accumulate in float32 (tolerances: 1e-5, 1e-3, 1e-2 of ‖C‖).
/// </summary>
public enum CudaGemmPrecision
{
    /// <summary>Exact float32 (CUBLAS_COMPUTE_32F): the default, within 1e-5 of the float64 reference.</summary>
    Fp32,
    /// <summary>TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32): a 10-bit mantissa in the products.</summary>
    Tf32,
    /// <summary>bfloat16 tensor cores (CUBLAS_COMPUTE_32F_FAST_16BF): an 8-bit mantissa in the products.</summary>
    Bf16,
}

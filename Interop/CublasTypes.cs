namespace LoraRuntime.Interop;

#pragma warning disable CA1707, CA1028 // the names and values are the headers'

/// <summary>cublasStatus_t (values from shared/cuda/SIGNATURES.md).</summary>
public enum cublasStatus_t
{
    /// <summary>Success.</summary>
    CUBLAS_STATUS_SUCCESS = 0,
    /// <summary>The library was not initialised.</summary>
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    /// <summary>An allocation inside cuBLAS failed.</summary>
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    /// <summary>An unsupported value or parameter.</summary>
    CUBLAS_STATUS_INVALID_VALUE = 7,
    /// <summary>A feature absent on this architecture.</summary>
    CUBLAS_STATUS_ARCH_MISMATCH = 8,
    /// <summary>Access to GPU memory failed.</summary>
    CUBLAS_STATUS_MAPPING_ERROR = 11,
    /// <summary>The kernel failed to run.</summary>
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    /// <summary>An internal failure.</summary>
    CUBLAS_STATUS_INTERNAL_ERROR = 14,
    /// <summary>The functionality is not supported.</summary>
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
    /// <summary>A licensing error.</summary>
    CUBLAS_STATUS_LICENSE_ERROR = 16,
}

/// <summary>cublasOperation_t.</summary>
public enum cublasOperation_t
{
    /// <summary>As stored.</summary>
    CUBLAS_OP_N = 0,
    /// <summary>Transposed.</summary>
    CUBLAS_OP_T = 1,
    /// <summary>Conjugate-transposed.</summary>
    CUBLAS_OP_C = 2,
}

/// <summary>cublasMath_t.</summary>
public enum cublasMath_t
{
    /// <summary>The default (no TF32 for 32F compute).</summary>
    CUBLAS_DEFAULT_MATH = 0,
    /// <summary>Deprecated tensor-op math.</summary>
    CUBLAS_TENSOR_OP_MATH = 1,
    /// <summary>The exact compute type, no reduced precision anywhere.</summary>
    CUBLAS_PEDANTIC_MATH = 2,
    /// <summary>TF32 tensor cores for 32F compute.</summary>
    CUBLAS_TF32_TENSOR_OP_MATH = 3,
}

/// <summary>cublasComputeType_t.</summary>
public enum cublasComputeType_t
{
    /// <summary>Half-precision compute.</summary>
    CUBLAS_COMPUTE_16F = 64,
    /// <summary>float32 compute.</summary>
    CUBLAS_COMPUTE_32F = 68,
    /// <summary>float32 compute, pedantic.</summary>
    CUBLAS_COMPUTE_32F_PEDANTIC = 69,
    /// <summary>float64 compute.</summary>
    CUBLAS_COMPUTE_64F = 70,
    /// <summary>float32 accumulate, inputs rounded to fp16 for tensor cores.</summary>
    CUBLAS_COMPUTE_32F_FAST_16F = 74,
    /// <summary>float32 accumulate, inputs rounded to bf16 for tensor cores.</summary>
    CUBLAS_COMPUTE_32F_FAST_16BF = 75,
    /// <summary>float32 accumulate, inputs rounded to TF32 for tensor cores.</summary>
    CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
}

/// <summary>cudaDataType (library_types.h): the element types the runtime passes.</summary>
public enum cudaDataType
{
    /// <summary>float.</summary>
    CUDA_R_32F = 0,
    /// <summary>double.</summary>
    CUDA_R_64F = 1,
    /// <summary>half.</summary>
    CUDA_R_16F = 2,
    /// <summary>bfloat16.</summary>
    CUDA_R_16BF = 14,
}

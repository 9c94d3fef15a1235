namespace LoraRuntime.Interop;

#pragma warning disable CA1707 // the names are the header's

/// <summary>cusolverStatus_t (values from shared/cuda/SIGNATURES.md).</summary>
public enum cusolverStatus_t
{
    /// <summary>Success.</summary>
    CUSOLVER_STATUS_SUCCESS = 0,
    /// <summary>The library was not initialised.</summary>
    CUSOLVER_STATUS_NOT_INITIALIZED = 1,
    /// <summary>An allocation inside cuSOLVER failed.</summary>
    CUSOLVER_STATUS_ALLOC_FAILED = 2,
    /// <summary>An unsupported value or parameter.</summary>
    CUSOLVER_STATUS_INVALID_VALUE = 3,
    /// <summary>A feature absent on this architecture.</summary>
    CUSOLVER_STATUS_ARCH_MISMATCH = 4,
    /// <summary>Access to GPU memory failed.</summary>
    CUSOLVER_STATUS_MAPPING_ERROR = 5,
    /// <summary>The kernel failed to run.</summary>
    CUSOLVER_STATUS_EXECUTION_FAILED = 6,
    /// <summary>An internal failure.</summary>
    CUSOLVER_STATUS_INTERNAL_ERROR = 7,
    /// <summary>The matrix type is not supported.</summary>
    CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED = 8,
    /// <summary>The functionality is not supported.</summary>
    CUSOLVER_STATUS_NOT_SUPPORTED = 9,
    /// <summary>A zero pivot.</summary>
    CUSOLVER_STATUS_ZERO_PIVOT = 10,
    /// <summary>A licensing error.</summary>
    CUSOLVER_STATUS_INVALID_LICENSE = 11,
    /// <summary>The workspace is not valid.</summary>
    CUSOLVER_STATUS_INVALID_WORKSPACE = 31,
}

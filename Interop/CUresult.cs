namespace LoraRuntime.Interop;

#pragma warning disable CA1707 // the names are the header's, so they match cuGetErrorName and grep

/// <summary>The status code of every driver call (cuda.h); values from shared/cuda/SIGNATURES.md.</summary>
public enum CUresult
{
    /// <summary>No error.</summary>
    CUDA_SUCCESS = 0,
    /// <summary>An argument is out of range.</summary>
    CUDA_ERROR_INVALID_VALUE = 1,
    /// <summary>The device ran out of memory.</summary>
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    /// <summary>cuInit has not been called (or failed).</summary>
    CUDA_ERROR_NOT_INITIALIZED = 3,
    /// <summary>No CUDA-capable device.</summary>
    CUDA_ERROR_NO_DEVICE = 100,
    /// <summary>The module image is not valid.</summary>
    CUDA_ERROR_INVALID_IMAGE = 200,
    /// <summary>No valid current context.</summary>
    CUDA_ERROR_INVALID_CONTEXT = 201,
    /// <summary>No kernel image for this GPU's architecture.</summary>
    CUDA_ERROR_NO_BINARY_FOR_GPU = 209,
    /// <summary>PTX failed to compile.</summary>
    CUDA_ERROR_INVALID_PTX = 218,
    /// <summary>PTX from a newer toolchain than the driver.</summary>
    CUDA_ERROR_UNSUPPORTED_PTX_VERSION = 222,
    /// <summary>A handle is not valid.</summary>
    CUDA_ERROR_INVALID_HANDLE = 400,
    /// <summary>A named symbol was not found.</summary>
    CUDA_ERROR_NOT_FOUND = 500,
    /// <summary>Asynchronous work has not completed yet (not an error).</summary>
    CUDA_ERROR_NOT_READY = 600,
    /// <summary>A kernel accessed an invalid address.</summary>
    CUDA_ERROR_ILLEGAL_ADDRESS = 700,
    /// <summary>A kernel failed.</summary>
    CUDA_ERROR_LAUNCH_FAILED = 719,
    /// <summary>The operation is not supported here.</summary>
    CUDA_ERROR_NOT_SUPPORTED = 801,
    /// <summary>The operation is not allowed during stream capture.</summary>
    CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED = 900,
    /// <summary>The stream capture was invalidated.</summary>
    CUDA_ERROR_STREAM_CAPTURE_INVALIDATED = 901,
    /// <summary>An unknown internal error.</summary>
    CUDA_ERROR_UNKNOWN = 999,
}

/// <summary>The device attributes the runtime reads (CUdevice_attribute).</summary>
public enum CUdevice_attribute
{
    /// <summary>Streaming multiprocessors.</summary>
    CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
    /// <summary>Compute capability, major.</summary>
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
    /// <summary>Compute capability, minor.</summary>
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
    /// <summary>Shared memory per block with opt-in.</summary>
    CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97,
    /// <summary>Whether stream-ordered memory pools are supported.</summary>
    CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED = 115,
}

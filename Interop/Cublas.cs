using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace LoraRuntime.Interop;

#pragma warning disable CA1707, IDE1006 // the names are the header's

/// <summary>
/// Raw bindings to cuBLAS (libcublas, after its dependency cuBLASLt), the symbols of shared/cuda/SIGNATURES.md with
/// their <c>_v2</c> names. Handles and streams are opaque pointers; device pointers are <c>void*</c> (nint).
/// <c>cublasGemmGroupedBatchedEx</c> (cuBLAS 12.5 and later) is looked up at run time: see <see cref="GemmGroupedBatchedEx"/>.
/// </summary>
public static unsafe partial class Cublas
{
    /// <summary>The library name the bindings import.</summary>
    public const string Library = CudaLibraryNames.Cublas;

    /// <summary>CUBLAS_GEMM_DEFAULT: let cuBLAS choose the algorithm.</summary>
    public const int CUBLAS_GEMM_DEFAULT = -1;

    static Cublas() => NativeLibraryResolver.Register();

    /// <summary>cublasStatus_t cublasCreate_v2(cublasHandle_t*).</summary>
    [LibraryImport(Library, EntryPoint = "cublasCreate_v2")]
    public static partial cublasStatus_t cublasCreate(nint* handle);

    /// <summary>cublasStatus_t cublasDestroy_v2(cublasHandle_t).</summary>
    [LibraryImport(Library, EntryPoint = "cublasDestroy_v2")]
    public static partial cublasStatus_t cublasDestroy(nint handle);

    /// <summary>cublasStatus_t cublasSetStream_v2(cublasHandle_t, cudaStream_t).</summary>
    [LibraryImport(Library, EntryPoint = "cublasSetStream_v2")]
    public static partial cublasStatus_t cublasSetStream(nint handle, nint stream);

    /// <summary>cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t, void*, size_t).</summary>
    [LibraryImport(Library, EntryPoint = "cublasSetWorkspace_v2")]
    public static partial cublasStatus_t cublasSetWorkspace(nint handle, nint workspace, nuint bytes);

    /// <summary>cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t).</summary>
    [LibraryImport(Library)]
    public static partial cublasStatus_t cublasSetMathMode(nint handle, cublasMath_t mode);

    /// <summary>cublasStatus_t cublasSetPointerMode_v2(cublasHandle_t, cublasPointerMode_t); 0 = host scalars.</summary>
    [LibraryImport(Library, EntryPoint = "cublasSetPointerMode_v2")]
    public static partial cublasStatus_t cublasSetPointerMode(nint handle, int mode);

    /// <summary>const char* cublasGetStatusString(cublasStatus_t).</summary>
    [LibraryImport(Library)]
    public static partial byte* cublasGetStatusString(cublasStatus_t status);

    /// <summary>cublasGemmEx: C = α·op(A)·op(B) + β·C, column-major; α and β host pointers of the compute type's scale type.</summary>
    [LibraryImport(Library)]
    public static partial cublasStatus_t cublasGemmEx(nint handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
        void* alpha, nint a, cudaDataType aType, int lda, nint b, cudaDataType bType, int ldb, void* beta, nint c, cudaDataType cType, int ldc,
        cublasComputeType_t computeType, int algo);

    /// <summary>cublasGemmStridedBatchedEx: batchCount GEMMs whose operands advance by the given element strides.</summary>
    [LibraryImport(Library)]
    public static partial cublasStatus_t cublasGemmStridedBatchedEx(nint handle, cublasOperation_t transa, cublasOperation_t transb,
        int m, int n, int k, void* alpha, nint a, cudaDataType aType, int lda, long strideA, nint b, cudaDataType bType, int ldb, long strideB,
        void* beta, nint c, cudaDataType cType, int ldc, long strideC, int batchCount, cublasComputeType_t computeType, int algo);

    /// <summary>
    /// cublasGemmGroupedBatchedEx (cuBLAS 12.5+), or null where this cuBLAS lacks it. The per-group arrays (transposes,
    /// sizes, leading dimensions, group sizes) and α/β live in host memory; the A, B and C pointer arrays in device memory.
    /// </summary>
    public static delegate* unmanaged<nint, cublasOperation_t*, cublasOperation_t*, int*, int*, int*, void*, nint, cudaDataType, int*,
        nint, cudaDataType, int*, void*, nint, cudaDataType, int*, int, int*, cublasComputeType_t, cublasStatus_t> GemmGroupedBatchedEx
    {
        get
        {
            if (!s_groupedResolved)
            {
                var library = NativeLibraryResolver.Load(Library);
                if (library.IsLoaded && NativeLibrary.TryGetExport(library.Handle, "cublasGemmGroupedBatchedEx", out nint address))
                    s_grouped = address;
                s_groupedResolved = true;
            }
            return (delegate* unmanaged<nint, cublasOperation_t*, cublasOperation_t*, int*, int*, int*, void*, nint, cudaDataType, int*,
                nint, cudaDataType, int*, void*, nint, cudaDataType, int*, int, int*, cublasComputeType_t, cublasStatus_t>)s_grouped;
        }
    }

    private static nint s_grouped;
    private static bool s_groupedResolved;

    /// <summary>Throws <see cref="CudaLibraryException"/> naming <paramref name="call"/> when <paramref name="status"/> is not success.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThrowIfFailed(cublasStatus_t status, [CallerArgumentExpression(nameof(status))] string call = "")
    {
        if (status != cublasStatus_t.CUBLAS_STATUS_SUCCESS) Throw(status, call);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Throw(cublasStatus_t status, string call)
    {
        string? detail = null;
        try
        {
            byte* text = cublasGetStatusString(status);
            if (text != null) detail = Marshal.PtrToStringUTF8((nint)text);
        }
        catch (EntryPointNotFoundException)
        {
            // An old cuBLAS: the enum's name will do.
        }
        throw new CudaLibraryException("cuBLAS", call, Enum.IsDefined(status) ? status.ToString() : "cublasStatus_t", (int)status, detail);
    }
}

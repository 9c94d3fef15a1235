using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace LoraRuntime.Interop;

#pragma warning disable CA1707, IDE1006 // the names are the header's

/// <summary>
/// Raw bindings to dense cuSOLVER (libcusolver, after nvJitLink, cuSPARSE, cuBLASLt and cuBLAS): handles, parameters,
/// the 64-bit generic SVDs (Xgesvd full, Xgesvdr randomized) and QR (geqrf, orgqr) in float64, with their buffer-size
/// queries, and the Jacobi SVDs (gesvdj, gesvdjBatched for many small matrices). Device pointers are nint; <c>info</c>
/// and <c>deviceInfo</c> arguments that report a status point at device memory.
/// </summary>
public static unsafe partial class Cusolver
{
    /// <summary>The library name the bindings import.</summary>
    public const string Library = CudaLibraryNames.Cusolver;

    static Cusolver() => NativeLibraryResolver.Register();

    /// <summary>cusolverStatus_t cusolverDnCreate(cusolverDnHandle_t*).</summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnCreate(nint* handle);

    /// <summary>cusolverStatus_t cusolverDnDestroy(cusolverDnHandle_t).</summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnDestroy(nint handle);

    /// <summary>cusolverStatus_t cusolverDnSetStream(cusolverDnHandle_t, cudaStream_t).</summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnSetStream(nint handle, nint stream);

    /// <summary>cusolverStatus_t cusolverDnCreateParams(cusolverDnParams_t*).</summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnCreateParams(nint* parameters);

    /// <summary>cusolverStatus_t cusolverDnDestroyParams(cusolverDnParams_t).</summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnDestroyParams(nint parameters);

    /// <summary>Workspace sizes of <see cref="cusolverDnXgesvd"/>, in bytes on the device and on the host.</summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnXgesvd_bufferSize(nint handle, nint parameters, sbyte jobu, sbyte jobvt, long m, long n,
        cudaDataType typeA, nint a, long lda, cudaDataType typeS, nint s, cudaDataType typeU, nint u, long ldu, cudaDataType typeVT, nint vt,
        long ldvt, cudaDataType computeType, nuint* deviceBytes, nuint* hostBytes);

    /// <summary>
    /// The SVD A = U·diag(S)·VT of a column-major m×n A with m ≥ n (A is destroyed); jobu/jobvt 'A', 'S', 'O' or 'N';
    /// info (device) is 0 on success, i &gt; 0 when i superdiagonals did not converge.
    /// </summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnXgesvd(nint handle, nint parameters, sbyte jobu, sbyte jobvt, long m, long n,
        cudaDataType typeA, nint a, long lda, cudaDataType typeS, nint s, cudaDataType typeU, nint u, long ldu, cudaDataType typeVT, nint vt,
        long ldvt, cudaDataType computeType, nint deviceWork, nuint deviceBytes, void* hostWork, nuint hostBytes, nint info);

    /// <summary>Workspace sizes of <see cref="cusolverDnXgesvdr"/>.</summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnXgesvdr_bufferSize(nint handle, nint parameters, sbyte jobu, sbyte jobv, long m, long n,
        long k, long p, long niters, cudaDataType typeA, nint a, long lda, cudaDataType typeS, nint s, cudaDataType typeU, nint u, long ldu,
        cudaDataType typeV, nint v, long ldv, cudaDataType computeType, nuint* deviceBytes, nuint* hostBytes);

    /// <summary>
    /// The rank-k randomized SVD of a column-major m×n A with oversampling p and niters power iterations: S (k),
    /// U (m×k) and V (n×k, not transposed); jobu/jobv 'S' or 'N'.
    /// </summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnXgesvdr(nint handle, nint parameters, sbyte jobu, sbyte jobv, long m, long n, long k,
        long p, long niters, cudaDataType typeA, nint a, long lda, cudaDataType typeS, nint s, cudaDataType typeU, nint u, long ldu,
        cudaDataType typeV, nint v, long ldv, cudaDataType computeType, nint deviceWork, nuint deviceBytes, void* hostWork, nuint hostBytes,
        nint info);

    /// <summary>cusolverDnDgeqrf_bufferSize(h, m, n, A, lda, int* lwork): lwork in doubles.</summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnDgeqrf_bufferSize(nint handle, int m, int n, nint a, int lda, int* lwork);

    /// <summary>cusolverDnDgeqrf: Householder QR of a column-major m×n A in place (R above the diagonal, reflectors below, tau).</summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnDgeqrf(nint handle, int m, int n, nint a, int lda, nint tau, nint work, int lwork, nint info);

    /// <summary>cusolverDnDorgqr_bufferSize(h, m, n, k, A, lda, tau, int* lwork): lwork in doubles.</summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnDorgqr_bufferSize(nint handle, int m, int n, int k, nint a, int lda, nint tau, int* lwork);

    /// <summary>cusolverDnDorgqr: overwrites the m×n A (m ≥ n ≥ k) with the first n columns of Q from geqrf's reflectors.</summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnDorgqr(nint handle, int m, int n, int k, nint a, int lda, nint tau, nint work, int lwork,
        nint info);

    /// <summary>cusolverDnCreateGesvdjInfo(gesvdjInfo_t*): the Jacobi SVD's settings and report.</summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnCreateGesvdjInfo(nint* info);

    /// <summary>cusolverDnDestroyGesvdjInfo(gesvdjInfo_t).</summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnDestroyGesvdjInfo(nint info);

    /// <summary>cusolverDnXgesvdjSetTolerance(gesvdjInfo_t, double).</summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnXgesvdjSetTolerance(nint info, double tolerance);

    /// <summary>cusolverDnXgesvdjSetMaxSweeps(gesvdjInfo_t, int).</summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnXgesvdjSetMaxSweeps(nint info, int sweeps);

    /// <summary>cusolverDnXgesvdjSetSortEig(gesvdjInfo_t, int): nonzero sorts the singular values in descending order.</summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnXgesvdjSetSortEig(nint info, int sort);

    /// <summary>cusolverDnXgesvdjGetResidual(handle, gesvdjInfo_t, double*).</summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnXgesvdjGetResidual(nint handle, nint info, double* residual);

    /// <summary>cusolverDnXgesvdjGetSweeps(handle, gesvdjInfo_t, int*).</summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnXgesvdjGetSweeps(nint handle, nint info, int* sweeps);

    /// <summary>cusolverDnSgesvdj_bufferSize(h, jobz, econ, m, n, A, lda, S, U, ldu, V, ldv, int* lwork, info): lwork in floats.</summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnSgesvdj_bufferSize(nint handle, int jobz, int econ, int m, int n, nint a, int lda, nint s,
        nint u, int ldu, nint v, int ldv, int* lwork, nint info);

    /// <summary>cusolverDnSgesvdj: the one-sided Jacobi SVD of a column-major m×n A; returns V, not Vᵀ; jobz 1 = vectors.</summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnSgesvdj(nint handle, int jobz, int econ, int m, int n, nint a, int lda, nint s, nint u,
        int ldu, nint v, int ldv, nint work, int lwork, nint deviceInfo, nint info);

    /// <summary>cusolverDnSgesvdjBatched_bufferSize(h, jobz, m, n, A, lda, S, U, ldu, V, ldv, int* lwork, info, batchSize).</summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnSgesvdjBatched_bufferSize(nint handle, int jobz, int m, int n, nint a, int lda, nint s,
        nint u, int ldu, nint v, int ldv, int* lwork, nint info, int batchSize);

    /// <summary>
    /// cusolverDnSgesvdjBatched: batchSize Jacobi SVDs of column-major m×n matrices stored one after another (m, n ≤ 32);
    /// deviceInfo holds one int per matrix.
    /// </summary>
    [LibraryImport(Library)]
    public static partial cusolverStatus_t cusolverDnSgesvdjBatched(nint handle, int jobz, int m, int n, nint a, int lda, nint s, nint u, int ldu,
        nint v, int ldv, nint work, int lwork, nint deviceInfo, nint info, int batchSize);

    /// <summary>cusolverEigMode_t: CUSOLVER_EIG_MODE_VECTOR (compute singular vectors).</summary>
    public const int CUSOLVER_EIG_MODE_VECTOR = 1;

    /// <summary>Throws <see cref="CudaLibraryException"/> naming <paramref name="call"/> when <paramref name="status"/> is not success.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThrowIfFailed(cusolverStatus_t status, [CallerArgumentExpression(nameof(status))] string call = "")
    {
        if (status != cusolverStatus_t.CUSOLVER_STATUS_SUCCESS) Throw(status, call);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Throw(cusolverStatus_t status, string call) =>
        throw new CudaLibraryException("cuSOLVER", call, Enum.IsDefined(status) ? status.ToString() : "cusolverStatus_t", (int)status);
}

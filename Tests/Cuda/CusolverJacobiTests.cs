using System.Runtime.InteropServices;
using LoraRuntime.Cuda;
using LoraRuntime.Interop;
using LoraRuntime.Tests.Linalg;
using Xunit;

namespace LoraRuntime.Tests.Cuda;

/// <summary>
/// The Jacobi SVD bindings (cusolverDnSgesvdjBatched), called directly on device memory of a CUDA backend: the singular
/// values of a batch of small matrices against the float64 reference. The backend itself uses Xgesvd; these bindings
/// are for many small SVDs at once.
/// </summary>
public sealed unsafe class CusolverJacobiTests
{
    public CusolverJacobiTests() => CudaTestDevice.SkipUnlessUsable();

    [Fact]
    public void Batched_Jacobi_SVD_gives_the_singular_values_of_each_matrix()
    {
        const int m = 12, n = 7, batch = 3;
        using var backend = new CudaBackend();
        // Column-major m×n matrices, one after another; the row-major m×n reference of matrix b is its transpose.
        var rowMajor = Enumerable.Range(0, batch).Select(b => LinalgReference.GaussianMatrix(m, n, 50 + b)).ToArray();
        var columnMajor = new float[batch * m * n];
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) columnMajor[b * m * n + i + j * m] = rowMajor[b][i * n + j];
        using var a = backend.FromArray(columnMajor, columnMajor.Length);
        using var s = backend.Zeros(batch * n);
        using var u = backend.Zeros(batch * m * m);
        using var v = backend.Zeros(batch * n * n);
        using var info = backend.Zeros(DType.I32, new Shape(batch));
        backend.Synchronize();

        nint handle, jacobi;
        Cusolver.ThrowIfFailed(Cusolver.cusolverDnCreate(&handle));
        Cusolver.ThrowIfFailed(Cusolver.cusolverDnCreateGesvdjInfo(&jacobi));
        try
        {
            Cusolver.ThrowIfFailed(Cusolver.cusolverDnXgesvdjSetTolerance(jacobi, 1e-7));
            Cusolver.ThrowIfFailed(Cusolver.cusolverDnXgesvdjSetMaxSweeps(jacobi, 100));
            Cusolver.ThrowIfFailed(Cusolver.cusolverDnXgesvdjSetSortEig(jacobi, 1));
            int lwork;
            Cusolver.ThrowIfFailed(Cusolver.cusolverDnSgesvdjBatched_bufferSize(handle, Cusolver.CUSOLVER_EIG_MODE_VECTOR, m, n, a.Pointer, m,
                s.Pointer, u.Pointer, m, v.Pointer, n, &lwork, jacobi, batch));
            using var work = backend.Allocate(Math.Max(1, lwork));
            Cusolver.ThrowIfFailed(Cusolver.cusolverDnSgesvdjBatched(handle, Cusolver.CUSOLVER_EIG_MODE_VECTOR, m, n, a.Pointer, m, s.Pointer,
                u.Pointer, m, v.Pointer, n, work.Pointer, lwork, info.Pointer, jacobi, batch));
            CudaDriver.ThrowIfFailed(CudaDriver.cuCtxSynchronize());
        }
        finally
        {
            Cusolver.cusolverDnDestroyGesvdjInfo(jacobi);
            Cusolver.cusolverDnDestroy(handle);
        }
        var infos = MemoryMarshal.Cast<float, int>(ReadInts(backend, info)).ToArray();
        Assert.Equal(new int[batch], infos);
        var values = s.ToArray();
        for (int b = 0; b < batch; b++)
        {
            var reference = LinalgReference.SingularValues(rowMajor[b], m, n);
            for (int i = 0; i < n; i++)
                Assert.True(Math.Abs(values[b * n + i] - reference[i]) <= 1e-5 * reference[0], $"matrix {b}, s[{i}] = {values[b * n + i]}, expected {reference[i]}");
        }
    }

    /// <summary>An I32 tensor's bits, read through a float view of the same memory.</summary>
    private static float[] ReadInts(Backend backend, Tensor ints)
    {
        using var asFloats = backend.Allocate(checked((int)ints.Length));
        backend.Synchronize();
        CudaDriver.ThrowIfFailed(CudaDriver.cuMemcpyDtoDAsync((ulong)asFloats.Pointer, (ulong)ints.Pointer, (nuint)ints.ByteLength, 0));
        CudaDriver.ThrowIfFailed(CudaDriver.cuCtxSynchronize());
        return asFloats.ToArray();
    }
}

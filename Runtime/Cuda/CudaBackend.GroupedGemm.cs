using System.Runtime.InteropServices;
using LoraRuntime.Interop;

namespace LoraRuntime.Cuda;

// GemmGrouped through cublasGemmGroupedBatchedEx: every problem with a product is its own group of one. The per-group
// sizes, transposes and scalars are host arrays; the A, B and C pointer arrays are staged in pinned memory and copied
// to a device buffer on the stream. All three buffers grow to the largest group seen and are then reused, so steady
// state allocates nothing.
public sealed unsafe partial class CudaBackend
{
    private int _groupCapacity;
    private int* _groupHost;          // 11 four-byte entries per group (see TryGemmGroupedBatched)
    private nint _groupPinned, _groupDevice;
    private int _groupPinnedClass, _groupDeviceClass;
    private nint _groupStaged;        // event: the last copy out of _groupPinned

    private bool TryGemmGroupedBatched(ReadOnlySpan<GemmProblem> problems, int groups)
    {
        EnsureGroupCapacity(groups);
        if (_groupStaged != 0) CudaDriver.ThrowIfFailed(CudaDriver.cuEventSynchronize(_groupStaged));
        var transA = (cublasOperation_t*)_groupHost;
        var transB = transA + groups;
        int* m = (int*)(transB + groups), n = m + groups, k = n + groups, lda = k + groups, ldb = lda + groups, ldc = ldb + groups;
        int* size = ldc + groups;
        float* alpha = (float*)(size + groups), beta = alpha + groups;
        nint* pointers = (nint*)_groupPinned; // [A…, B…, C…]
        int g = 0;
        foreach (ref readonly var p in problems)
        {
            if (p.M == 0 || p.N == 0 || p.K == 0) continue;
            var call = CublasGemmCall.For(p); // cuBLAS's first operand is our B
            transA[g] = call.TransA;
            transB[g] = call.TransB;
            m[g] = call.M;
            n[g] = call.N;
            k[g] = call.K;
            lda[g] = call.Lda;
            ldb[g] = call.Ldb;
            ldc[g] = call.Ldc;
            size[g] = 1;
            alpha[g] = p.Alpha;
            beta[g] = p.Beta;
            pointers[g] = At(p.B, call.FirstOffset);
            pointers[groups + g] = At(p.A, call.SecondOffset);
            pointers[2 * groups + g] = At(p.C, call.OffsetC);
            g++;
        }
        CudaDriver.ThrowIfFailed(CudaDriver.cuMemcpyHtoDAsync((ulong)_groupDevice, (void*)_groupPinned, (nuint)(3 * groups * sizeof(nint)), _stream));
        CudaDriver.ThrowIfFailed(CudaDriver.cuEventRecord(_groupStaged, _stream));
        nint devicePointers = _groupDevice;
        const cudaDataType F32 = cudaDataType.CUDA_R_32F;
        cublasStatus_t status = Cublas.GemmGroupedBatchedEx(_blas, transA, transB, m, n, k, alpha, devicePointers, F32, lda,
            devicePointers + groups * sizeof(nint), F32, ldb, beta, devicePointers + 2 * groups * sizeof(nint), F32, ldc, groups, size,
            cublasComputeType_t.CUBLAS_COMPUTE_32F);
        if (status is cublasStatus_t.CUBLAS_STATUS_NOT_SUPPORTED or cublasStatus_t.CUBLAS_STATUS_INVALID_VALUE)
        {
            // This cuBLAS refuses the grouped form for these arguments: fall back to one GEMM per problem from now on.
            _groupedUnsupported = true;
            return false;
        }
        Cublas.ThrowIfFailed(status, "cublasGemmGroupedBatchedEx");
        return true;
    }

    private void EnsureGroupCapacity(int groups)
    {
        if (groups <= _groupCapacity) return;
        FreeGroupBuffers(waitForStream: true);
        int capacity = Math.Max(groups, 2 * _groupCapacity);
        _groupHost = (int*)NativeMemory.Alloc((nuint)(11 * capacity), sizeof(int));
        _groupPinned = _pinned.Rent(3L * capacity * sizeof(nint), out _groupPinnedClass);
        _groupDevice = Pool.Rent(3L * capacity * sizeof(nint), out _groupDeviceClass);
        nint staged;
        CudaDriver.ThrowIfFailed(CudaDriver.cuEventCreate(&staged, CudaDriver.CU_EVENT_DISABLE_TIMING));
        _groupStaged = staged;
        _groupCapacity = capacity;
    }

    private void FreeGroupBuffers(bool waitForStream)
    {
        if (_groupCapacity == 0) return;
        if (waitForStream) CudaDriver.ThrowIfFailed(CudaDriver.cuStreamSynchronize(_stream));
        NativeMemory.Free(_groupHost);
        _pinned.Return(_groupPinned, _groupPinnedClass);
        Pool.Return(_groupDevice, _groupDeviceClass);
        CudaDriver.cuEventDestroy(_groupStaged);
        _groupHost = null;
        _groupPinned = _groupDevice = _groupStaged = 0;
        _groupCapacity = 0;
    }
}

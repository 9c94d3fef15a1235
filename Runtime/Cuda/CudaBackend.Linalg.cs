using System.Runtime.InteropServices;
using LoraRuntime.Interop;

namespace LoraRuntime.Cuda;

// QR, SVD and truncated SVD through cuSOLVER, in float64 like the CPU path: the float32 row-major input is widened to
// a column-major float64 copy (linalg.cu), factorised, and the factors narrowed back with the sign conventions of
// Backend.Linalg. Work buffers come from the pool and return to it when the call ends.
public sealed unsafe partial class CudaBackend
{
    private const sbyte JobThin = (sbyte)'S';
    private const cudaDataType F64 = cudaDataType.CUDA_R_64F;
    private nint _solver, _solverParams;

    private void CreateSolver()
    {
        nint handle, parameters;
        Cusolver.ThrowIfFailed(Cusolver.cusolverDnCreate(&handle));
        _solver = handle;
        Cusolver.ThrowIfFailed(Cusolver.cusolverDnSetStream(_solver, _stream));
        Cusolver.ThrowIfFailed(Cusolver.cusolverDnCreateParams(&parameters));
        _solverParams = parameters;
    }

    private void DestroySolver()
    {
        if (_solverParams != 0) Cusolver.cusolverDnDestroyParams(_solverParams);
        if (_solver != 0) Cusolver.cusolverDnDestroy(_solver);
        _solver = _solverParams = 0;
    }

    /// <inheritdoc/>
    protected override void QrCore(Tensor q, Tensor r, Tensor a)
    {
        using var gate = Enter();
        int m = a.Shape[0], n = a.Shape[1], k = Math.Min(m, n);
        using var w = Scratch((long)m * n);
        using var tau = Scratch(k);
        using var signs = Scratch(k);
        Widen(w.Pointer, a, transpose: true); // column-major A, m×n, ld m
        int lwork, lworkQ;
        Cusolver.ThrowIfFailed(Cusolver.cusolverDnDgeqrf_bufferSize(_solver, m, n, w.Pointer, m, &lwork));
        Cusolver.ThrowIfFailed(Cusolver.cusolverDnDorgqr_bufferSize(_solver, m, k, k, w.Pointer, m, tau.Pointer, &lworkQ));
        using var work = Scratch(Math.Max(1, Math.Max(lwork, lworkQ)));
        Cusolver.ThrowIfFailed(Cusolver.cusolverDnDgeqrf(_solver, m, n, w.Pointer, m, tau.Pointer, work.Pointer, lwork, InfoPointer));
        CheckInfo("cusolverDnDgeqrf", m, n);
        // R first (orgqr overwrites it), with each row's sign chosen to make the diagonal nonnegative; then Q's columns.
        long ld = m;
        nint signsPointer = signs.Pointer, wPointer = w.Pointer, rPointer = r.Pointer;
        void** signArgs = stackalloc void*[] { &signsPointer, &wPointer, &k, &ld };
        Launch(CudaKernel.DiagonalSigns, BlocksFor(k), signArgs);
        void** rArgs = stackalloc void*[] { &rPointer, &wPointer, &signsPointer, &k, &n, &ld };
        Launch(CudaKernel.QrExtractR, BlocksFor((long)k * n), rArgs);
        Cusolver.ThrowIfFailed(Cusolver.cusolverDnDorgqr(_solver, m, k, k, w.Pointer, m, tau.Pointer, work.Pointer, lworkQ, InfoPointer));
        CheckInfo("cusolverDnDorgqr", m, k);
        Narrow(q, w.Pointer, m, k, 1, m, signs.Pointer, perRow: false);
    }

    /// <inheritdoc/>
    protected override void SvdCore(Tensor u, Tensor s, Tensor vt, Tensor a)
    {
        using var gate = Enter();
        int m = a.Shape[0], n = a.Shape[1], k = Math.Min(m, n), rows = Math.Max(m, n);
        // cuSOLVER's gesvd wants rows ≥ columns: factor A (column-major, when tall) or Aᵀ (A's own bytes, when wide).
        bool tall = m > n;
        using var w = Scratch((long)rows * k);
        using var sd = Scratch(k);
        using var uw = Scratch((long)rows * k);
        using var vtw = Scratch((long)k * k);
        Widen(w.Pointer, a, transpose: tall);
        nuint deviceBytes, hostBytes;
        Cusolver.ThrowIfFailed(Cusolver.cusolverDnXgesvd_bufferSize(_solver, _solverParams, JobThin, JobThin, rows, k, F64, w.Pointer, rows,
            F64, sd.Pointer, F64, uw.Pointer, rows, F64, vtw.Pointer, k, F64, &deviceBytes, &hostBytes));
        using var work = Scratch(Math.Max(1, ((long)deviceBytes + 7) / 8));
        void* host = hostBytes > 0 ? NativeMemory.Alloc(hostBytes) : null;
        try
        {
            Cusolver.ThrowIfFailed(Cusolver.cusolverDnXgesvd(_solver, _solverParams, JobThin, JobThin, rows, k, F64, w.Pointer, rows, F64,
                sd.Pointer, F64, uw.Pointer, rows, F64, vtw.Pointer, k, F64, work.Pointer, deviceBytes, host, hostBytes, InfoPointer));
            CheckInfo("cusolverDnXgesvd", rows, k);
        }
        finally
        {
            if (host != null) NativeMemory.Free(host);
        }
        // W = Uw·S·VTw. Tall: u = Uw (rows×k, ld rows), vt = VTw (k×k, ld k). Wide: A = VTwᵀ·S·Uwᵀ, so u(i, j) = VTw(j, i)
        // and vt(j, c) = Uw(c, j).
        if (tall) WriteSingularTriplets(u, s, vt, m, n, k, sd.Pointer, uw.Pointer, 1, rows, vtw.Pointer, 1, k);
        else WriteSingularTriplets(u, s, vt, m, n, k, sd.Pointer, vtw.Pointer, k, 1, uw.Pointer, rows, 1);
    }

    /// <inheritdoc/>
    protected override void TruncatedSvdCore(Tensor u, Tensor s, Tensor vt, Tensor a, TruncatedSvdOptions options)
    {
        if (TruncatedSvdMethod == CudaTruncatedSvdMethod.Sketch) SketchedTruncatedSvd(u, s, vt, a, options);
        else CusolverTruncatedSvd(u, s, vt, a, options);
    }

    /// <summary>cusolverDnXgesvdr in float64 on the tall orientation of A.</summary>
    private void CusolverTruncatedSvd(Tensor u, Tensor s, Tensor vt, Tensor a, TruncatedSvdOptions options)
    {
        using var gate = Enter();
        int m = a.Shape[0], n = a.Shape[1], rank = s.Shape[0], rows = Math.Max(m, n), cols = Math.Min(m, n);
        bool tall = m > n;
        long oversampling = Math.Min(options.Oversampling, cols - rank); // cuSOLVER needs rank + p ≤ min(m, n)
        using var w = Scratch((long)rows * cols);
        using var sd = Scratch(rank);
        using var uw = Scratch((long)rows * rank);
        using var vw = Scratch((long)cols * rank);
        Widen(w.Pointer, a, transpose: tall);
        nuint deviceBytes, hostBytes;
        Cusolver.ThrowIfFailed(Cusolver.cusolverDnXgesvdr_bufferSize(_solver, _solverParams, JobThin, JobThin, rows, cols, rank, oversampling,
            options.PowerIterations, F64, w.Pointer, rows, F64, sd.Pointer, F64, uw.Pointer, rows, F64, vw.Pointer, cols, F64, &deviceBytes, &hostBytes));
        using var work = Scratch(Math.Max(1, ((long)deviceBytes + 7) / 8));
        void* host = hostBytes > 0 ? NativeMemory.Alloc(hostBytes) : null;
        try
        {
            Cusolver.ThrowIfFailed(Cusolver.cusolverDnXgesvdr(_solver, _solverParams, JobThin, JobThin, rows, cols, rank, oversampling,
                options.PowerIterations, F64, w.Pointer, rows, F64, sd.Pointer, F64, uw.Pointer, rows, F64, vw.Pointer, cols, F64,
                work.Pointer, deviceBytes, host, hostBytes, InfoPointer));
            CheckInfo("cusolverDnXgesvdr", rows, cols);
        }
        finally
        {
            if (host != null) NativeMemory.Free(host);
        }
        // W ≈ Uw·S·Vwᵀ with Vw (cols×rank, ld cols) not transposed. Tall: u = Uw, vt(j, c) = Vw(c, j). Wide: u(i, j) = Vw(i, j),
        // vt(j, c) = Uw(c, j).
        if (tall) WriteSingularTriplets(u, s, vt, m, n, rank, sd.Pointer, uw.Pointer, 1, rows, vw.Pointer, cols, 1);
        else WriteSingularTriplets(u, s, vt, m, n, rank, sd.Pointer, vw.Pointer, 1, cols, uw.Pointer, rows, 1);
    }

    /// <summary>
    /// u (m×k), s and vt (k×n) from float64 factors: u(i, j) = U[i·uRow + j·uCol], vt(j, c) = V[j·vRow + c·vCol]; each
    /// column of u and row of vt flipped together so that u's largest-magnitude entry per column is positive.
    /// </summary>
    private void WriteSingularTriplets(Tensor u, Tensor s, Tensor vt, int m, int n, int k, nint sd, nint uf, long uRow, long uCol,
        nint vf, long vRow, long vCol)
    {
        using var signs = Scratch(k);
        nint signsPointer = signs.Pointer;
        void** signArgs = stackalloc void*[] { &signsPointer, &uf, &m, &uRow, &uCol };
        CudaDriver.ThrowIfFailed(CudaDriver.cuLaunchKernel(_device.Function(CudaKernel.ColumnSigns), (uint)k, 1, 1, BlockSize, 1, 1, 0, _stream,
            signArgs, null));
        Narrow(u, uf, m, k, uRow, uCol, signsPointer, perRow: false);
        Narrow(vt, vf, k, n, vRow, vCol, signsPointer, perRow: true);
        Narrow(s, sd, 1, k, 0, 1, 0, perRow: false);
    }

    /// <summary>out (rows×cols, float32 row-major) = sign·in[i·rowStride + j·colStride].</summary>
    private void Narrow(Tensor output, nint input, int rows, int cols, long rowStride, long colStride, nint signs, bool perRow)
    {
        nint o = output.Pointer;
        int isPerRow = perRow ? 1 : 0;
        void** args = stackalloc void*[] { &o, &input, &rows, &cols, &rowStride, &colStride, &signs, &isPerRow };
        Launch(CudaKernel.NarrowF32, BlocksFor((long)rows * cols), args);
    }

    /// <summary>The float64 copy of a: column-major (transpose) or as it lies (the column-major aᵀ).</summary>
    private void Widen(nint output, Tensor a, bool transpose)
    {
        nint i = a.Pointer;
        int rows = a.Shape[0], cols = a.Shape[1], isTranspose = transpose ? 1 : 0;
        void** args = stackalloc void*[] { &output, &i, &rows, &cols, &isTranspose };
        Launch(CudaKernel.WidenF64, BlocksFor((long)rows * cols), args);
    }

    /// <summary>The device int cuSOLVER reports into (after the scan word of the scratch block).</summary>
    private nint InfoPointer => _scratch + sizeof(ulong);

    /// <summary>Reads cuSOLVER's info (waits for the stream): &lt; 0 a bad argument, &gt; 0 no convergence.</summary>
    private void CheckInfo(string call, long m, long n)
    {
        CudaDriver.ThrowIfFailed(CudaDriver.cuMemcpyDtoHAsync((void*)_hostScratch, (ulong)InfoPointer, sizeof(int), _stream));
        CudaDriver.ThrowIfFailed(CudaDriver.cuStreamSynchronize(_stream));
        int info = *(int*)_hostScratch;
        if (info < 0) throw new InvalidOperationException($"{call} on a {m}×{n} matrix rejected its argument {-info} (info = {info})");
        if (info > 0) throw new NoConvergenceException($"{call} on a {m}×{n} matrix: {info} superdiagonals did not converge");
    }

    /// <summary>A float64 work buffer of <paramref name="doubles"/> elements from the pool, returned when disposed.</summary>
    private ScratchBlock Scratch(long doubles)
    {
        long bytes = Math.Max(1, doubles) * sizeof(double);
        nint pointer = Pool.Rent(bytes, out int sizeClass);
        return new ScratchBlock(this, pointer, sizeClass);
    }

    /// <summary>A rented device block; disposing returns it to the pool (the stream keeps the order of later uses).</summary>
    private readonly struct ScratchBlock(CudaBackend owner, nint pointer, int sizeClass) : IDisposable
    {
        public nint Pointer => pointer;

        public void Dispose() => owner.Pool.Return(pointer, sizeClass);
    }
}

using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace LoraRuntime.Cpu.Gemm;

// The GEMV jobs of a workspace (M = 1 or N = 1): how they are set up and split, and the tasks that run them.
internal sealed unsafe partial class Workspace
{
    /// <summary>Maps M = 1 or N = 1 onto the two GEMV forms (C = op(A)·op(B) read as y = Mat·x or y = xᵀ·Mat).</summary>
    private static void AddGemv(ref GemmJob j, int threads)
    {
        j.Depth = j.K;
        if (j.M == 1)
        {
            // y = C row 0 (N outputs), x = op(A) row 0.
            j.Y = j.C; j.IncY = 1; j.Outputs = j.N;
            j.X = j.A; j.IncX = j.TransA ? j.Lda : 1;
            j.Mat = j.B; j.Ldm = j.Ldb;
            j.Kind = j.TransB ? GemmJobKind.GemvRows : GemmJobKind.GemvColumns;
        }
        else
        {
            // y = C column 0 (M outputs), x = op(B) column 0.
            j.Y = j.C; j.IncY = j.Ldc; j.Outputs = j.M;
            j.X = j.B; j.IncX = j.TransB ? 1 : j.Ldb;
            j.Mat = j.A; j.Ldm = j.Lda;
            j.Kind = j.TransA ? GemmJobKind.GemvColumns : GemmJobKind.GemvRows;
        }
        j.Chunk = j.Kind == GemmJobKind.GemvColumns ? ColumnsChunk(j.Outputs, threads) : GemvRowsChunk;
        // With fewer column segments than threads, split the depth instead: each thread streams its own
        // contiguous rows (whole rows prefetch best), and the partial sums are added at the end.
        int segments = (j.Outputs + j.Chunk - 1) / j.Chunk;
        j.DepthSplits = j.Kind == GemmJobKind.GemvColumns && (long)j.Outputs * threads <= PackedACapFloats
            ? Math.Clamp(threads / segments, 1, Math.Max(1, j.Depth / 64)) : 1;
    }

    /// <summary>Column segments as wide as the L1-resident sums allow, but enough of them to share out when wide.</summary>
    private static int ColumnsChunk(int outputs, int threads) =>
        outputs <= GemvColumnsMaxChunk ? outputs
            : Math.Clamp(RoundUp((outputs + threads - 1) / threads, 16), 256, GemvColumnsMaxChunk);

    private void GemvColumns(ref GemmJob j, int task, int worker)
    {
        int splits = j.DepthSplits, chunk = task / splits, split = task % splits;
        int j0 = chunk * j.Chunk, w = Math.Min(j.Chunk, j.Outputs - j0);
        if (splits == 1)
        {
            GemvKernels.Columns(j.Mat + j0, j.Ldm, j.X, j.IncX, j.Depth, _tile[worker], w);
            Store(ref j, j0, new Span<float>(_tile[worker], w));
            return;
        }
        int k0 = (int)((long)split * j.Depth / splits), k1 = (int)((long)(split + 1) * j.Depth / splits);
        float* partials = _packedA + j.PackedA;
        GemvKernels.Columns(j.Mat + k0 * j.Ldm + j0, j.Ldm, j.X + k0 * j.IncX, j.IncX, k1 - k0, partials + (long)split * j.Outputs + j0, w);
        if (Interlocked.Decrement(ref j.Pending) != 0) return;
        // The last task adds the partial sums of every split into the first and stores.
        var total = new Span<float>(partials, j.Outputs);
        for (int s = 1; s < splits; s++)
            TensorPrimitives.Add(total, new ReadOnlySpan<float>(partials + (long)s * j.Outputs, j.Outputs), total);
        Store(ref j, 0, total);
    }

    /// <summary>Panels [task·Chunk, …) of y = x·B for a B of packed panels: each panel a K×NR matrix read once, contiguously.</summary>
    private void GemvPanels(ref GemmJob j, int task, int worker)
    {
        int nr = _k.Nr, panels = (j.Outputs + nr - 1) / nr;
        int q0 = task * j.Chunk, q1 = Math.Min(panels, q0 + j.Chunk);
        float* acc = _tile[worker];
        bool wide = nr == 32 && Vector512.IsHardwareAccelerated, narrow = nr == 16 && Vector256.IsHardwareAccelerated;
        if (wide || narrow)
        {
            // Several panels' streams at once, a tile's worth of sums per pass.
            int group = Math.Max(1, _k.Mr * _k.Nr / nr / 4 * 4);
            for (int q = q0; q < q1; q += group)
            {
                int count = Math.Min(group, q1 - q);
                float* mat = j.Mat + (long)q * j.Depth * nr;
                if (wide) GemvKernels.Panels32(mat, (nint)j.Depth * nr, count, j.X, j.Depth, acc);
                else GemvKernels.Panels16(mat, (nint)j.Depth * nr, count, j.X, j.Depth, acc);
                Store(ref j, q * nr, new Span<float>(acc, Math.Min(count * nr, j.Outputs - q * nr)));
            }
            return;
        }
        for (int q = q0; q < q1; q++)
        {
            int w = Math.Min(nr, j.Outputs - q * nr);
            GemvKernels.Columns(j.Mat + (long)q * j.Depth * nr, nr, j.X, j.IncX, j.Depth, acc, w);
            Store(ref j, q * nr, new Span<float>(acc, w));
        }
    }

    private void GemvRows(ref GemmJob j, int chunk, int worker)
    {
        int r0 = chunk * j.Chunk, count = Math.Min(j.Chunk, j.Outputs - r0);
        var x = Contiguous(j.X, j.IncX, j.Depth, worker);
        var dots = new Span<float>(_tile[worker], count);
        for (int r = 0; r < count; r++)
            dots[r] = TensorPrimitives.Dot(new ReadOnlySpan<float>(j.Mat + (r0 + r) * j.Ldm, j.Depth), x);
        Store(ref j, r0, dots);
    }

    /// <summary>y[(first + i)·incY] = α·values[i] + β·y.</summary>
    private static void Store(ref GemmJob j, int first, Span<float> values)
    {
        float* y = j.Y + first * j.IncY;
        if (j.IncY == 1)
        {
            var dst = new Span<float>(y, values.Length);
            if (j.Beta == 0f) TensorPrimitives.Multiply(values, j.Alpha, dst);
            else
            {
                TensorPrimitives.Multiply(dst, j.Beta, dst);
                TensorPrimitives.MultiplyAdd(values, j.Alpha, dst, dst);
            }
            return;
        }
        for (int i = 0; i < values.Length; i++, y += j.IncY)
            *y = j.Beta == 0f ? j.Alpha * values[i] : j.Alpha * values[i] + j.Beta * *y;
    }

    private ReadOnlySpan<float> Contiguous(float* x, nint inc, int n, int worker)
    {
        if (inc == 1) return new ReadOnlySpan<float>(x, n);
        if (_vectorCap[worker] < n)
        {
            SgemmDriver.Free(ref _vector[worker]);
            _vector[worker] = SgemmDriver.Alloc(n);
            _vectorCap[worker] = n;
        }
        float* d = _vector[worker];
        for (int i = 0; i < n; i++) d[i] = x[i * inc];
        return new ReadOnlySpan<float>(d, n);
    }
}

using System.Runtime.CompilerServices;

namespace LoraRuntime.Cpu.Gemm;

// The inner-product jobs of a workspace (C narrow, A deep): when they apply, B packed transposed, and the tiles.
internal sealed unsafe partial class Workspace
{
    /// <summary>
    /// The inner-product form wins when C is too narrow to fill the micro-kernel's columns and A, read as
    /// stored, is deep: packing A would cost as much as the product itself.
    /// </summary>
    private bool UseDot(in GemmJob j) =>
        _k.Kind == GemmKernelKind.Avx512 && !j.TransA && j.N <= 32 && j.K >= 64 && (long)RoundUp(j.K, DotKernels.DepthAlign) * RoundUp(j.N, DotKernels.Cols) <= PackedACapFloats;

    private void PackTransposedB(ref GemmJob j, int group)
    {
        const int cols = DotKernels.Cols;
        int j0 = group * cols, count = Math.Min(cols, j.N - j0);
        float* dst = _packedA + j.PackedA + j0 * j.Ldm;
        DotKernels.PackTransposed(j.B, j.Ldb, j.TransB, j0, count, j.K, dst, j.Ldm);
        new Span<float>(dst + count * j.Ldm, (int)((cols - count) * j.Ldm)).Clear();
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ComputeDot(ref GemmJob j, int range)
    {
        const int cols = DotKernels.Cols;
        int pairs = (j.M + 1) / 2;
        int r0 = (int)((long)range * pairs / j.MRanges) * 2, r1 = Math.Min(j.M, (int)((long)(range + 1) * pairs / j.MRanges) * 2);
        float* bt = _packedA + j.PackedA;
        for (int i = r0; i < r1; i += 2)
        {
            int rows = Math.Min(2, r1 - i);
            for (int c0 = 0; c0 < j.N; c0 += cols)
                DotKernels.Tile(rows, Math.Min(cols, j.N - c0), j.K, j.A + i * j.Lda, j.Lda, bt + c0 * j.Ldm, j.Ldm,
                    j.C + i * j.Ldc + c0, j.Ldc, j.Alpha, j.Beta);
        }
    }
}

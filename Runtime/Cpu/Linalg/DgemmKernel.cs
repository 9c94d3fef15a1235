using LoraRuntime.Cpu.Gemm;

namespace LoraRuntime.Cpu.Linalg;

/// <summary>A float64 micro-kernel of the column-major DGEMM and the blocking that suits it.</summary>
internal readonly unsafe struct DgemmKernel
{
    /// <summary>Rows of the C tile (vector loads from packed A).</summary>
    public readonly int Mr;
    /// <summary>Columns of the C tile (broadcasts from packed B).</summary>
    public readonly int Nr;
    /// <summary>Depth of one packed block.</summary>
    public readonly int Kc;
    /// <summary>Columns of one packed B block (Kc·Nc doubles stay in L2).</summary>
    public readonly int Nc;
    public readonly delegate*<int, double*, double*, double*, nint, double, double, void> Compute;

    private DgemmKernel(int mr, int nr, int kc, int nc, delegate*<int, double*, double*, double*, nint, double, double, void> compute)
    {
        Mr = mr; Nr = nr; Kc = kc; Nc = nc; Compute = compute;
    }

    /// <summary>
    /// The float64 kernel that goes with the float32 GEMM kernel <paramref name="kind"/> (so a backend pinned to a
    /// kernel for tests runs the same instruction set in both). 128-bit SIMD holds two doubles: the scalar kernel is
    /// as good there.
    /// </summary>
    public static DgemmKernel For(GemmKernelKind kind)
    {
        if (kind == GemmKernelKind.Auto) kind = GemmKernel.Create(kind).Kind;
        return kind switch
        {
            GemmKernelKind.Avx512 => new(24, 8, 256, 256, &DgemmKernels.Avx512x24x8),
            GemmKernelKind.Avx2 => new(8, 6, 256, 252, &DgemmKernels.Avx2x8x6),
            _ => new(4, 4, 256, 256, &DgemmKernels.Scalar4x4),
        };
    }
}

using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace LoraRuntime.Cpu.Gemm;

/// <summary>Which register-blocked micro-kernel the packed GEMM uses.</summary>
public enum GemmKernelKind
{
    /// <summary>The widest the CPU supports.</summary>
    Auto,
    /// <summary>AVX-512F, 12×32.</summary>
    Avx512,
    /// <summary>AVX2 + FMA, 6×16.</summary>
    Avx2,
    /// <summary>128-bit SIMD (NEON, SSE), 6×8.</summary>
    Vector128,
    /// <summary>Plain scalar code, 4×4.</summary>
    Scalar,
}

/// <summary>A micro-kernel and the blocking that suits it.</summary>
internal readonly unsafe struct GemmKernel
{
    /// <summary>Rows of the C tile (broadcast from packed A).</summary>
    public readonly int Mr;
    /// <summary>Columns of the C tile (vector loads from packed B).</summary>
    public readonly int Nr;
    /// <summary>Depth of one packed block (K-blocking).</summary>
    public readonly int Kc;
    /// <summary>Columns of one packed B block (kept in L2).</summary>
    public readonly int Nc;
    public readonly GemmKernelKind Kind;
    public readonly delegate*<int, float*, nint, nint, float*, nint, float*, nint, float, float, void> Compute;

    private GemmKernel(GemmKernelKind kind, int mr, int nr, int kc, int nc,
        delegate*<int, float*, nint, nint, float*, nint, float*, nint, float, float, void> compute)
    {
        Kind = kind; Mr = mr; Nr = nr; Kc = kc; Nc = nc; Compute = compute;
    }

    /// <summary>True when this CPU can run <paramref name="kind"/>.</summary>
    public static bool IsSupported(GemmKernelKind kind) => kind switch
    {
        GemmKernelKind.Auto or GemmKernelKind.Scalar => true,
        GemmKernelKind.Avx512 => Avx512F.IsSupported && Vector512.IsHardwareAccelerated,
        GemmKernelKind.Avx2 => Avx2.IsSupported && Fma.IsSupported,
        GemmKernelKind.Vector128 => Vector128.IsHardwareAccelerated,
        _ => false,
    };

    /// <summary>The kernel for <paramref name="kind"/>, resolving <see cref="GemmKernelKind.Auto"/> to the widest supported.</summary>
    public static GemmKernel Create(GemmKernelKind kind)
    {
        if (kind == GemmKernelKind.Auto)
            kind = IsSupported(GemmKernelKind.Avx512) ? GemmKernelKind.Avx512
                 : IsSupported(GemmKernelKind.Avx2) ? GemmKernelKind.Avx2
                 : IsSupported(GemmKernelKind.Vector128) ? GemmKernelKind.Vector128
                 : GemmKernelKind.Scalar;
        if (!IsSupported(kind))
            throw new PlatformNotSupportedException($"the {kind} GEMM kernel needs instructions this CPU lacks");
        return kind switch
        {
            // Kc·Mr floats of A stay in L1 while Kc·Nc floats of B stream from L2 (BLIS's zen4 blocking, transposed).
            GemmKernelKind.Avx512 => new(kind, 12, 32, 384, 512, &MicroKernels.Avx512x12x32),
            GemmKernelKind.Avx2 => new(kind, 6, 16, 256, 512, &MicroKernels.Avx2x6x16),
            GemmKernelKind.Vector128 => new(kind, 6, 8, 256, 384, &MicroKernels.Simd128x6x8),
            _ => new(kind, 4, 4, 256, 256, &MicroKernels.Scalar4x4),
        };
    }
}

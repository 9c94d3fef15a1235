using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace LoraRuntime.Cpu.Linalg;

// The float64 register-blocked micro-kernels of the column-major DGEMM: C[MR×NR] = α·Σ_p A[0..MR, p] ⊗ B[p, 0..NR) + β·C
// over packed panels (A: MR doubles per p, B: NR doubles per p). Column-major C makes a tile's column contiguous, so
// the vectors run down the rows (A) and B's entries are broadcast. β = 0 never reads C. Only full tiles come here.
// Unrolled by hand so that every accumulator stays in a register; AggressiveOptimization skips Tier-0.
internal static unsafe class DgemmKernels
{
    /// <summary>AVX-512: 24×8, 24 zmm accumulators (3 vectors of A × 8 broadcasts of B).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Avx512x24x8(int kc, double* a, double* b, double* c, nint ldc, double alpha, double beta)
    {
        Vector512<double> c00 = default, c01 = default, c02 = default;
        Vector512<double> c10 = default, c11 = default, c12 = default;
        Vector512<double> c20 = default, c21 = default, c22 = default;
        Vector512<double> c30 = default, c31 = default, c32 = default;
        Vector512<double> c40 = default, c41 = default, c42 = default;
        Vector512<double> c50 = default, c51 = default, c52 = default;
        Vector512<double> c60 = default, c61 = default, c62 = default;
        Vector512<double> c70 = default, c71 = default, c72 = default;
        for (int p = 0; p < kc; p++)
        {
            var a0 = Vector512.Load(a);
            var a1 = Vector512.Load(a + 8);
            var a2 = Vector512.Load(a + 16);
            var b0 = Vector512.Create(b[0]);
            c00 = Vector512.FusedMultiplyAdd(a0, b0, c00); c01 = Vector512.FusedMultiplyAdd(a1, b0, c01); c02 = Vector512.FusedMultiplyAdd(a2, b0, c02);
            var b1 = Vector512.Create(b[1]);
            c10 = Vector512.FusedMultiplyAdd(a0, b1, c10); c11 = Vector512.FusedMultiplyAdd(a1, b1, c11); c12 = Vector512.FusedMultiplyAdd(a2, b1, c12);
            var b2 = Vector512.Create(b[2]);
            c20 = Vector512.FusedMultiplyAdd(a0, b2, c20); c21 = Vector512.FusedMultiplyAdd(a1, b2, c21); c22 = Vector512.FusedMultiplyAdd(a2, b2, c22);
            var b3 = Vector512.Create(b[3]);
            c30 = Vector512.FusedMultiplyAdd(a0, b3, c30); c31 = Vector512.FusedMultiplyAdd(a1, b3, c31); c32 = Vector512.FusedMultiplyAdd(a2, b3, c32);
            var b4 = Vector512.Create(b[4]);
            c40 = Vector512.FusedMultiplyAdd(a0, b4, c40); c41 = Vector512.FusedMultiplyAdd(a1, b4, c41); c42 = Vector512.FusedMultiplyAdd(a2, b4, c42);
            var b5 = Vector512.Create(b[5]);
            c50 = Vector512.FusedMultiplyAdd(a0, b5, c50); c51 = Vector512.FusedMultiplyAdd(a1, b5, c51); c52 = Vector512.FusedMultiplyAdd(a2, b5, c52);
            var b6 = Vector512.Create(b[6]);
            c60 = Vector512.FusedMultiplyAdd(a0, b6, c60); c61 = Vector512.FusedMultiplyAdd(a1, b6, c61); c62 = Vector512.FusedMultiplyAdd(a2, b6, c62);
            var b7 = Vector512.Create(b[7]);
            c70 = Vector512.FusedMultiplyAdd(a0, b7, c70); c71 = Vector512.FusedMultiplyAdd(a1, b7, c71); c72 = Vector512.FusedMultiplyAdd(a2, b7, c72);
            a += 24;
            b += 8;
        }
        var va = Vector512.Create(alpha);
        var vb = Vector512.Create(beta);
        Store(c + 0 * ldc, va, vb, beta, c00, c01, c02);
        Store(c + 1 * ldc, va, vb, beta, c10, c11, c12);
        Store(c + 2 * ldc, va, vb, beta, c20, c21, c22);
        Store(c + 3 * ldc, va, vb, beta, c30, c31, c32);
        Store(c + 4 * ldc, va, vb, beta, c40, c41, c42);
        Store(c + 5 * ldc, va, vb, beta, c50, c51, c52);
        Store(c + 6 * ldc, va, vb, beta, c60, c61, c62);
        Store(c + 7 * ldc, va, vb, beta, c70, c71, c72);    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(double* c, Vector512<double> va, Vector512<double> vb, double beta,
        Vector512<double> x0, Vector512<double> x1, Vector512<double> x2)
    {
        if (beta == 0)
        {
            Vector512.Store(va * x0, c);
            Vector512.Store(va * x1, c + 8);
            Vector512.Store(va * x2, c + 16);
        }
        else
        {
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c), va * x0), c);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 8), va * x1), c + 8);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 16), va * x2), c + 16);
        }
    }

    /// <summary>AVX2 + FMA: 8×6, 12 ymm accumulators (2 vectors of A × 6 broadcasts of B).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Avx2x8x6(int kc, double* a, double* b, double* c, nint ldc, double alpha, double beta)
    {
        Vector256<double> c00 = default, c01 = default;
        Vector256<double> c10 = default, c11 = default;
        Vector256<double> c20 = default, c21 = default;
        Vector256<double> c30 = default, c31 = default;
        Vector256<double> c40 = default, c41 = default;
        Vector256<double> c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            var a0 = Vector256.Load(a);
            var a1 = Vector256.Load(a + 4);
            var b0 = Vector256.Create(b[0]);
            c00 = Vector256.FusedMultiplyAdd(a0, b0, c00); c01 = Vector256.FusedMultiplyAdd(a1, b0, c01);
            var b1 = Vector256.Create(b[1]);
            c10 = Vector256.FusedMultiplyAdd(a0, b1, c10); c11 = Vector256.FusedMultiplyAdd(a1, b1, c11);
            var b2 = Vector256.Create(b[2]);
            c20 = Vector256.FusedMultiplyAdd(a0, b2, c20); c21 = Vector256.FusedMultiplyAdd(a1, b2, c21);
            var b3 = Vector256.Create(b[3]);
            c30 = Vector256.FusedMultiplyAdd(a0, b3, c30); c31 = Vector256.FusedMultiplyAdd(a1, b3, c31);
            var b4 = Vector256.Create(b[4]);
            c40 = Vector256.FusedMultiplyAdd(a0, b4, c40); c41 = Vector256.FusedMultiplyAdd(a1, b4, c41);
            var b5 = Vector256.Create(b[5]);
            c50 = Vector256.FusedMultiplyAdd(a0, b5, c50); c51 = Vector256.FusedMultiplyAdd(a1, b5, c51);
            a += 8;
            b += 6;
        }
        var va = Vector256.Create(alpha);
        var vb = Vector256.Create(beta);
        Store(c + 0 * ldc, va, vb, beta, c00, c01);
        Store(c + 1 * ldc, va, vb, beta, c10, c11);
        Store(c + 2 * ldc, va, vb, beta, c20, c21);
        Store(c + 3 * ldc, va, vb, beta, c30, c31);
        Store(c + 4 * ldc, va, vb, beta, c40, c41);
        Store(c + 5 * ldc, va, vb, beta, c50, c51);    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(double* c, Vector256<double> va, Vector256<double> vb, double beta, Vector256<double> x0, Vector256<double> x1)
    {
        if (beta == 0)
        {
            Vector256.Store(va * x0, c);
            Vector256.Store(va * x1, c + 4);
        }
        else
        {
            Vector256.Store(Vector256.FusedMultiplyAdd(vb, Vector256.Load(c), va * x0), c);
            Vector256.Store(Vector256.FusedMultiplyAdd(vb, Vector256.Load(c + 4), va * x1), c + 4);
        }
    }

    /// <summary>Plain scalar code, 4×4 (any CPU; also the 128-bit machines, where float64 SIMD gains little).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Scalar4x4(int kc, double* a, double* b, double* c, nint ldc, double alpha, double beta)
    {
        double c00 = 0, c10 = 0, c20 = 0, c30 = 0, c01 = 0, c11 = 0, c21 = 0, c31 = 0;
        double c02 = 0, c12 = 0, c22 = 0, c32 = 0, c03 = 0, c13 = 0, c23 = 0, c33 = 0;
        for (int p = 0; p < kc; p++, a += 4, b += 4)
        {
            double a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
            double b0 = b[0], b1 = b[1], b2 = b[2], b3 = b[3];
            c00 += a0 * b0; c10 += a1 * b0; c20 += a2 * b0; c30 += a3 * b0;
            c01 += a0 * b1; c11 += a1 * b1; c21 += a2 * b1; c31 += a3 * b1;
            c02 += a0 * b2; c12 += a1 * b2; c22 += a2 * b2; c32 += a3 * b2;
            c03 += a0 * b3; c13 += a1 * b3; c23 += a2 * b3; c33 += a3 * b3;
        }
        Store(c, alpha, beta, c00, c10, c20, c30);
        Store(c + ldc, alpha, beta, c01, c11, c21, c31);
        Store(c + 2 * ldc, alpha, beta, c02, c12, c22, c32);
        Store(c + 3 * ldc, alpha, beta, c03, c13, c23, c33);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(double* c, double alpha, double beta, double x0, double x1, double x2, double x3)
    {
        if (beta == 0)
        {
            c[0] = alpha * x0; c[1] = alpha * x1; c[2] = alpha * x2; c[3] = alpha * x3;
        }
        else
        {
            c[0] = alpha * x0 + beta * c[0]; c[1] = alpha * x1 + beta * c[1];
            c[2] = alpha * x2 + beta * c[2]; c[3] = alpha * x3 + beta * c[3];
        }
    }
}

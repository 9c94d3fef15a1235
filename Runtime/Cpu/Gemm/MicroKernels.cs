using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace LoraRuntime.Cpu.Gemm;

// The register-blocked micro-kernels: C[MR×NR] = α·Σ_p A[0..MR), p] ⊗ B[p, 0..NR) + β·C, with A's element (i, p) at
// a[i·rsa + p·csa] — a packed panel (rsa = 1, csa = MR), a transposed A read in place (1, lda) or a row-major A read
// in place (lda, 1), as BLIS's small-matrix kernels take both strides — and B rows ldb floats apart: NR in a packed
// panel, or B's own row stride where B is read as stored (see Workspace.Compute). Rows are addressed from one base
// pointer per three rows plus rsa and 2·rsa, so the loop holds few pointers whatever the strides. Unrolled by hand so
// that every accumulator stays in a register; β = 0 never reads C. Only full tiles come here: the driver routes edges through a scratch tile.
// AggressiveOptimization: a kernel runs thousands of times in its first call, so it must not start in Tier-0 code.
internal static unsafe class MicroKernels
{
    /// <summary>AVX-512: 12×32, 24 zmm accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Avx512x12x32(int kc, float* a, nint rsa, nint csa, float* b, nint ldb, float* c, nint ldc, float alpha, float beta)
    {
        var c0_0 = Vector512<float>.Zero; var c0_1 = Vector512<float>.Zero;
        var c1_0 = Vector512<float>.Zero; var c1_1 = Vector512<float>.Zero;
        var c2_0 = Vector512<float>.Zero; var c2_1 = Vector512<float>.Zero;
        var c3_0 = Vector512<float>.Zero; var c3_1 = Vector512<float>.Zero;
        var c4_0 = Vector512<float>.Zero; var c4_1 = Vector512<float>.Zero;
        var c5_0 = Vector512<float>.Zero; var c5_1 = Vector512<float>.Zero;
        var c6_0 = Vector512<float>.Zero; var c6_1 = Vector512<float>.Zero;
        var c7_0 = Vector512<float>.Zero; var c7_1 = Vector512<float>.Zero;
        var c8_0 = Vector512<float>.Zero; var c8_1 = Vector512<float>.Zero;
        var c9_0 = Vector512<float>.Zero; var c9_1 = Vector512<float>.Zero;
        var c10_0 = Vector512<float>.Zero; var c10_1 = Vector512<float>.Zero;
        var c11_0 = Vector512<float>.Zero; var c11_1 = Vector512<float>.Zero;
        float* r0 = a, r3 = a + 3 * rsa, r6 = a + 6 * rsa, r9 = a + 9 * rsa;
        nint l1 = rsa, l2 = 2 * rsa;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b + 0);
            var b1 = Vector512.Load(b + 16);
            var a0 = Vector512.Create(r0[0]);
            c0_0 = Vector512.FusedMultiplyAdd(a0, b0, c0_0);
            c0_1 = Vector512.FusedMultiplyAdd(a0, b1, c0_1);
            var a1 = Vector512.Create(r0[l1]);
            c1_0 = Vector512.FusedMultiplyAdd(a1, b0, c1_0);
            c1_1 = Vector512.FusedMultiplyAdd(a1, b1, c1_1);
            var a2 = Vector512.Create(r0[l2]);
            c2_0 = Vector512.FusedMultiplyAdd(a2, b0, c2_0);
            c2_1 = Vector512.FusedMultiplyAdd(a2, b1, c2_1);
            var a3 = Vector512.Create(r3[0]);
            c3_0 = Vector512.FusedMultiplyAdd(a3, b0, c3_0);
            c3_1 = Vector512.FusedMultiplyAdd(a3, b1, c3_1);
            var a4 = Vector512.Create(r3[l1]);
            c4_0 = Vector512.FusedMultiplyAdd(a4, b0, c4_0);
            c4_1 = Vector512.FusedMultiplyAdd(a4, b1, c4_1);
            var a5 = Vector512.Create(r3[l2]);
            c5_0 = Vector512.FusedMultiplyAdd(a5, b0, c5_0);
            c5_1 = Vector512.FusedMultiplyAdd(a5, b1, c5_1);
            var a6 = Vector512.Create(r6[0]);
            c6_0 = Vector512.FusedMultiplyAdd(a6, b0, c6_0);
            c6_1 = Vector512.FusedMultiplyAdd(a6, b1, c6_1);
            var a7 = Vector512.Create(r6[l1]);
            c7_0 = Vector512.FusedMultiplyAdd(a7, b0, c7_0);
            c7_1 = Vector512.FusedMultiplyAdd(a7, b1, c7_1);
            var a8 = Vector512.Create(r6[l2]);
            c8_0 = Vector512.FusedMultiplyAdd(a8, b0, c8_0);
            c8_1 = Vector512.FusedMultiplyAdd(a8, b1, c8_1);
            var a9 = Vector512.Create(r9[0]);
            c9_0 = Vector512.FusedMultiplyAdd(a9, b0, c9_0);
            c9_1 = Vector512.FusedMultiplyAdd(a9, b1, c9_1);
            var a10 = Vector512.Create(r9[l1]);
            c10_0 = Vector512.FusedMultiplyAdd(a10, b0, c10_0);
            c10_1 = Vector512.FusedMultiplyAdd(a10, b1, c10_1);
            var a11 = Vector512.Create(r9[l2]);
            c11_0 = Vector512.FusedMultiplyAdd(a11, b0, c11_0);
            c11_1 = Vector512.FusedMultiplyAdd(a11, b1, c11_1);
            r0 += csa; r3 += csa; r6 += csa; r9 += csa;
            b += ldb;
        }
        var va = Vector512.Create(alpha);
        if (beta == 0f)
        {
            Vector512.Store(va * c0_0, c + 0 * ldc + 0);
            Vector512.Store(va * c0_1, c + 0 * ldc + 16);
            Vector512.Store(va * c1_0, c + 1 * ldc + 0);
            Vector512.Store(va * c1_1, c + 1 * ldc + 16);
            Vector512.Store(va * c2_0, c + 2 * ldc + 0);
            Vector512.Store(va * c2_1, c + 2 * ldc + 16);
            Vector512.Store(va * c3_0, c + 3 * ldc + 0);
            Vector512.Store(va * c3_1, c + 3 * ldc + 16);
            Vector512.Store(va * c4_0, c + 4 * ldc + 0);
            Vector512.Store(va * c4_1, c + 4 * ldc + 16);
            Vector512.Store(va * c5_0, c + 5 * ldc + 0);
            Vector512.Store(va * c5_1, c + 5 * ldc + 16);
            Vector512.Store(va * c6_0, c + 6 * ldc + 0);
            Vector512.Store(va * c6_1, c + 6 * ldc + 16);
            Vector512.Store(va * c7_0, c + 7 * ldc + 0);
            Vector512.Store(va * c7_1, c + 7 * ldc + 16);
            Vector512.Store(va * c8_0, c + 8 * ldc + 0);
            Vector512.Store(va * c8_1, c + 8 * ldc + 16);
            Vector512.Store(va * c9_0, c + 9 * ldc + 0);
            Vector512.Store(va * c9_1, c + 9 * ldc + 16);
            Vector512.Store(va * c10_0, c + 10 * ldc + 0);
            Vector512.Store(va * c10_1, c + 10 * ldc + 16);
            Vector512.Store(va * c11_0, c + 11 * ldc + 0);
            Vector512.Store(va * c11_1, c + 11 * ldc + 16);
        }
        else
        {
            var vb = Vector512.Create(beta);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 0 * ldc + 0), va * c0_0), c + 0 * ldc + 0);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 0 * ldc + 16), va * c0_1), c + 0 * ldc + 16);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 1 * ldc + 0), va * c1_0), c + 1 * ldc + 0);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 1 * ldc + 16), va * c1_1), c + 1 * ldc + 16);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 2 * ldc + 0), va * c2_0), c + 2 * ldc + 0);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 2 * ldc + 16), va * c2_1), c + 2 * ldc + 16);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 3 * ldc + 0), va * c3_0), c + 3 * ldc + 0);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 3 * ldc + 16), va * c3_1), c + 3 * ldc + 16);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 4 * ldc + 0), va * c4_0), c + 4 * ldc + 0);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 4 * ldc + 16), va * c4_1), c + 4 * ldc + 16);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 5 * ldc + 0), va * c5_0), c + 5 * ldc + 0);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 5 * ldc + 16), va * c5_1), c + 5 * ldc + 16);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 6 * ldc + 0), va * c6_0), c + 6 * ldc + 0);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 6 * ldc + 16), va * c6_1), c + 6 * ldc + 16);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 7 * ldc + 0), va * c7_0), c + 7 * ldc + 0);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 7 * ldc + 16), va * c7_1), c + 7 * ldc + 16);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 8 * ldc + 0), va * c8_0), c + 8 * ldc + 0);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 8 * ldc + 16), va * c8_1), c + 8 * ldc + 16);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 9 * ldc + 0), va * c9_0), c + 9 * ldc + 0);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 9 * ldc + 16), va * c9_1), c + 9 * ldc + 16);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 10 * ldc + 0), va * c10_0), c + 10 * ldc + 0);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 10 * ldc + 16), va * c10_1), c + 10 * ldc + 16);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 11 * ldc + 0), va * c11_0), c + 11 * ldc + 0);
            Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 11 * ldc + 16), va * c11_1), c + 11 * ldc + 16);
        }
    }

    /// <summary>AVX2 + FMA: 6×16, 12 ymm accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Avx2x6x16(int kc, float* a, nint rsa, nint csa, float* b, nint ldb, float* c, nint ldc, float alpha, float beta)
    {
        var c0_0 = Vector256<float>.Zero; var c0_1 = Vector256<float>.Zero;
        var c1_0 = Vector256<float>.Zero; var c1_1 = Vector256<float>.Zero;
        var c2_0 = Vector256<float>.Zero; var c2_1 = Vector256<float>.Zero;
        var c3_0 = Vector256<float>.Zero; var c3_1 = Vector256<float>.Zero;
        var c4_0 = Vector256<float>.Zero; var c4_1 = Vector256<float>.Zero;
        var c5_0 = Vector256<float>.Zero; var c5_1 = Vector256<float>.Zero;
        float* r0 = a, r3 = a + 3 * rsa;
        nint l1 = rsa, l2 = 2 * rsa;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector256.Load(b + 0);
            var b1 = Vector256.Load(b + 8);
            var a0 = Vector256.Create(r0[0]);
            c0_0 = Vector256.FusedMultiplyAdd(a0, b0, c0_0);
            c0_1 = Vector256.FusedMultiplyAdd(a0, b1, c0_1);
            var a1 = Vector256.Create(r0[l1]);
            c1_0 = Vector256.FusedMultiplyAdd(a1, b0, c1_0);
            c1_1 = Vector256.FusedMultiplyAdd(a1, b1, c1_1);
            var a2 = Vector256.Create(r0[l2]);
            c2_0 = Vector256.FusedMultiplyAdd(a2, b0, c2_0);
            c2_1 = Vector256.FusedMultiplyAdd(a2, b1, c2_1);
            var a3 = Vector256.Create(r3[0]);
            c3_0 = Vector256.FusedMultiplyAdd(a3, b0, c3_0);
            c3_1 = Vector256.FusedMultiplyAdd(a3, b1, c3_1);
            var a4 = Vector256.Create(r3[l1]);
            c4_0 = Vector256.FusedMultiplyAdd(a4, b0, c4_0);
            c4_1 = Vector256.FusedMultiplyAdd(a4, b1, c4_1);
            var a5 = Vector256.Create(r3[l2]);
            c5_0 = Vector256.FusedMultiplyAdd(a5, b0, c5_0);
            c5_1 = Vector256.FusedMultiplyAdd(a5, b1, c5_1);
            r0 += csa; r3 += csa;
            b += ldb;
        }
        var va = Vector256.Create(alpha);
        if (beta == 0f)
        {
            Vector256.Store(va * c0_0, c + 0 * ldc + 0);
            Vector256.Store(va * c0_1, c + 0 * ldc + 8);
            Vector256.Store(va * c1_0, c + 1 * ldc + 0);
            Vector256.Store(va * c1_1, c + 1 * ldc + 8);
            Vector256.Store(va * c2_0, c + 2 * ldc + 0);
            Vector256.Store(va * c2_1, c + 2 * ldc + 8);
            Vector256.Store(va * c3_0, c + 3 * ldc + 0);
            Vector256.Store(va * c3_1, c + 3 * ldc + 8);
            Vector256.Store(va * c4_0, c + 4 * ldc + 0);
            Vector256.Store(va * c4_1, c + 4 * ldc + 8);
            Vector256.Store(va * c5_0, c + 5 * ldc + 0);
            Vector256.Store(va * c5_1, c + 5 * ldc + 8);
        }
        else
        {
            var vb = Vector256.Create(beta);
            Vector256.Store(Vector256.FusedMultiplyAdd(vb, Vector256.Load(c + 0 * ldc + 0), va * c0_0), c + 0 * ldc + 0);
            Vector256.Store(Vector256.FusedMultiplyAdd(vb, Vector256.Load(c + 0 * ldc + 8), va * c0_1), c + 0 * ldc + 8);
            Vector256.Store(Vector256.FusedMultiplyAdd(vb, Vector256.Load(c + 1 * ldc + 0), va * c1_0), c + 1 * ldc + 0);
            Vector256.Store(Vector256.FusedMultiplyAdd(vb, Vector256.Load(c + 1 * ldc + 8), va * c1_1), c + 1 * ldc + 8);
            Vector256.Store(Vector256.FusedMultiplyAdd(vb, Vector256.Load(c + 2 * ldc + 0), va * c2_0), c + 2 * ldc + 0);
            Vector256.Store(Vector256.FusedMultiplyAdd(vb, Vector256.Load(c + 2 * ldc + 8), va * c2_1), c + 2 * ldc + 8);
            Vector256.Store(Vector256.FusedMultiplyAdd(vb, Vector256.Load(c + 3 * ldc + 0), va * c3_0), c + 3 * ldc + 0);
            Vector256.Store(Vector256.FusedMultiplyAdd(vb, Vector256.Load(c + 3 * ldc + 8), va * c3_1), c + 3 * ldc + 8);
            Vector256.Store(Vector256.FusedMultiplyAdd(vb, Vector256.Load(c + 4 * ldc + 0), va * c4_0), c + 4 * ldc + 0);
            Vector256.Store(Vector256.FusedMultiplyAdd(vb, Vector256.Load(c + 4 * ldc + 8), va * c4_1), c + 4 * ldc + 8);
            Vector256.Store(Vector256.FusedMultiplyAdd(vb, Vector256.Load(c + 5 * ldc + 0), va * c5_0), c + 5 * ldc + 0);
            Vector256.Store(Vector256.FusedMultiplyAdd(vb, Vector256.Load(c + 5 * ldc + 8), va * c5_1), c + 5 * ldc + 8);
        }
    }

    /// <summary>128-bit SIMD (NEON, SSE): 6×8, 12 accumulators; fused multiply-add only where the hardware has it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Simd128x6x8(int kc, float* a, nint rsa, nint csa, float* b, nint ldb, float* c, nint ldc, float alpha, float beta)
    {
        var c0_0 = Vector128<float>.Zero; var c0_1 = Vector128<float>.Zero;
        var c1_0 = Vector128<float>.Zero; var c1_1 = Vector128<float>.Zero;
        var c2_0 = Vector128<float>.Zero; var c2_1 = Vector128<float>.Zero;
        var c3_0 = Vector128<float>.Zero; var c3_1 = Vector128<float>.Zero;
        var c4_0 = Vector128<float>.Zero; var c4_1 = Vector128<float>.Zero;
        var c5_0 = Vector128<float>.Zero; var c5_1 = Vector128<float>.Zero;
        float* r0 = a, r3 = a + 3 * rsa;
        nint l1 = rsa, l2 = 2 * rsa;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector128.Load(b + 0);
            var b1 = Vector128.Load(b + 4);
            var a0 = Vector128.Create(r0[0]);
            c0_0 = Vector128.MultiplyAddEstimate(a0, b0, c0_0);
            c0_1 = Vector128.MultiplyAddEstimate(a0, b1, c0_1);
            var a1 = Vector128.Create(r0[l1]);
            c1_0 = Vector128.MultiplyAddEstimate(a1, b0, c1_0);
            c1_1 = Vector128.MultiplyAddEstimate(a1, b1, c1_1);
            var a2 = Vector128.Create(r0[l2]);
            c2_0 = Vector128.MultiplyAddEstimate(a2, b0, c2_0);
            c2_1 = Vector128.MultiplyAddEstimate(a2, b1, c2_1);
            var a3 = Vector128.Create(r3[0]);
            c3_0 = Vector128.MultiplyAddEstimate(a3, b0, c3_0);
            c3_1 = Vector128.MultiplyAddEstimate(a3, b1, c3_1);
            var a4 = Vector128.Create(r3[l1]);
            c4_0 = Vector128.MultiplyAddEstimate(a4, b0, c4_0);
            c4_1 = Vector128.MultiplyAddEstimate(a4, b1, c4_1);
            var a5 = Vector128.Create(r3[l2]);
            c5_0 = Vector128.MultiplyAddEstimate(a5, b0, c5_0);
            c5_1 = Vector128.MultiplyAddEstimate(a5, b1, c5_1);
            r0 += csa; r3 += csa;
            b += ldb;
        }
        var va = Vector128.Create(alpha);
        if (beta == 0f)
        {
            Vector128.Store(va * c0_0, c + 0 * ldc + 0);
            Vector128.Store(va * c0_1, c + 0 * ldc + 4);
            Vector128.Store(va * c1_0, c + 1 * ldc + 0);
            Vector128.Store(va * c1_1, c + 1 * ldc + 4);
            Vector128.Store(va * c2_0, c + 2 * ldc + 0);
            Vector128.Store(va * c2_1, c + 2 * ldc + 4);
            Vector128.Store(va * c3_0, c + 3 * ldc + 0);
            Vector128.Store(va * c3_1, c + 3 * ldc + 4);
            Vector128.Store(va * c4_0, c + 4 * ldc + 0);
            Vector128.Store(va * c4_1, c + 4 * ldc + 4);
            Vector128.Store(va * c5_0, c + 5 * ldc + 0);
            Vector128.Store(va * c5_1, c + 5 * ldc + 4);
        }
        else
        {
            var vb = Vector128.Create(beta);
            Vector128.Store(Vector128.MultiplyAddEstimate(vb, Vector128.Load(c + 0 * ldc + 0), va * c0_0), c + 0 * ldc + 0);
            Vector128.Store(Vector128.MultiplyAddEstimate(vb, Vector128.Load(c + 0 * ldc + 4), va * c0_1), c + 0 * ldc + 4);
            Vector128.Store(Vector128.MultiplyAddEstimate(vb, Vector128.Load(c + 1 * ldc + 0), va * c1_0), c + 1 * ldc + 0);
            Vector128.Store(Vector128.MultiplyAddEstimate(vb, Vector128.Load(c + 1 * ldc + 4), va * c1_1), c + 1 * ldc + 4);
            Vector128.Store(Vector128.MultiplyAddEstimate(vb, Vector128.Load(c + 2 * ldc + 0), va * c2_0), c + 2 * ldc + 0);
            Vector128.Store(Vector128.MultiplyAddEstimate(vb, Vector128.Load(c + 2 * ldc + 4), va * c2_1), c + 2 * ldc + 4);
            Vector128.Store(Vector128.MultiplyAddEstimate(vb, Vector128.Load(c + 3 * ldc + 0), va * c3_0), c + 3 * ldc + 0);
            Vector128.Store(Vector128.MultiplyAddEstimate(vb, Vector128.Load(c + 3 * ldc + 4), va * c3_1), c + 3 * ldc + 4);
            Vector128.Store(Vector128.MultiplyAddEstimate(vb, Vector128.Load(c + 4 * ldc + 0), va * c4_0), c + 4 * ldc + 0);
            Vector128.Store(Vector128.MultiplyAddEstimate(vb, Vector128.Load(c + 4 * ldc + 4), va * c4_1), c + 4 * ldc + 4);
            Vector128.Store(Vector128.MultiplyAddEstimate(vb, Vector128.Load(c + 5 * ldc + 0), va * c5_0), c + 5 * ldc + 0);
            Vector128.Store(Vector128.MultiplyAddEstimate(vb, Vector128.Load(c + 5 * ldc + 4), va * c5_1), c + 5 * ldc + 4);
        }
    }

    /// <summary>Scalar: 4×4, for hardware without SIMD acceleration.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Scalar4x4(int kc, float* a, nint rsa, nint csa, float* b, nint ldb, float* c, nint ldc, float alpha, float beta)
    {
        float* acc = stackalloc float[16];
        new Span<float>(acc, 16).Clear();
        for (int p = 0; p < kc; p++, a += csa, b += ldb)
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++)
                    acc[i * 4 + j] += a[i * rsa] * b[j];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                c[i * ldc + j] = beta == 0f ? alpha * acc[i * 4 + j] : alpha * acc[i * 4 + j] + beta * c[i * ldc + j];
    }
}

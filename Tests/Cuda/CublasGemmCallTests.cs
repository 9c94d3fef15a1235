using LoraRuntime.Cpu;
using LoraRuntime.Cuda;
using LoraRuntime.Interop;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Cuda;

/// <summary>
/// The row-major → column-major mapping of the cuBLAS GEMM, checked without a GPU: the mapped call, evaluated with
/// BLAS's column-major semantics in float64 (and its leading-dimension rules), must give the row-major reference.
/// </summary>
public sealed class CublasGemmCallTests
{
    /// <summary>C = α·op(A)·op(B) + β·C exactly as column-major BLAS defines it, with its argument checks.</summary>
    private static void ColumnMajorGemm(CublasGemmCall call, double alpha, float[] first, float[] second, double beta, double[] c)
    {
        bool ta = call.TransA == cublasOperation_t.CUBLAS_OP_T, tb = call.TransB == cublasOperation_t.CUBLAS_OP_T;
        int m = call.M, n = call.N, k = call.K;
        // cublasGemmEx's rules: lda ≥ max(1, rows of A as stored), likewise ldb and ldc ≥ max(1, m).
        Assert.True(call.Lda >= Math.Max(1, ta ? k : m), $"lda {call.Lda} too small");
        Assert.True(call.Ldb >= Math.Max(1, tb ? n : k), $"ldb {call.Ldb} too small");
        Assert.True(call.Ldc >= Math.Max(1, m), $"ldc {call.Ldc} too small");
        double A(int i, int p) => ta ? first[call.FirstOffset + p + (long)i * call.Lda] : first[call.FirstOffset + i + (long)p * call.Lda];
        double B(int p, int j) => tb ? second[call.SecondOffset + j + (long)p * call.Ldb] : second[call.SecondOffset + p + (long)j * call.Ldb];
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++)
            {
                double sum = 0;
                for (int p = 0; p < k; p++) sum += A(i, p) * B(p, j);
                long at = call.OffsetC + i + (long)j * call.Ldc;
                c[at] = alpha * sum + (beta == 0 ? 0 : beta * c[at]);
            }
    }

    [Theory]
    [InlineData(7, 5, 3, 0, 0, 0)]
    [InlineData(1, 33, 17, 2, 3, 4)]
    [InlineData(33, 1, 17, 0, 5, 1)]
    [InlineData(19, 45, 33, 3, 1, 7)]
    [InlineData(64, 8, 96, 1, 0, 2)]
    public void The_mapped_call_computes_the_row_major_product(int m, int n, int k, int padA, int padB, int padC)
    {
        using var cpu = new CpuBackend();
        foreach (bool ta in new[] { false, true })
            foreach (bool tb in new[] { false, true })
            {
                int lda = (ta ? m : k) + padA, ldb = (tb ? k : n) + padB, ldc = n + padC, offset = 5;
                var av = Reference.Random(offset + (ta ? k : m) * lda, m + 1);
                var bv = Reference.Random(offset + (tb ? n : k) * ldb, n + 2);
                var cv = Reference.Random(offset + m * ldc, k + 3);
                using var a = cpu.FromArray(av, av.Length);
                using var b = cpu.FromArray(bv, bv.Length);
                using var c = cpu.FromArray(cv, cv.Length);
                var p = Gemm.GemmConformance.Problem(ta, tb, m, n, k, 0.5f, -1.25f, a, offset, lda, b, offset, ldb, c, offset, ldc);
                var call = CublasGemmCall.For(p);
                var expected = Reference.ToDouble(cv);
                Reference.Gemm(ta, tb, m, n, k, 0.5, av, offset, lda, bv, offset, ldb, -1.25, expected, offset, ldc);
                var actual = Reference.ToDouble(cv);
                ColumnMajorGemm(call, 0.5, bv, av, -1.25, actual); // cuBLAS's first operand is our B
                for (int i = 0; i < actual.Length; i++)
                    Assert.True(Math.Abs(actual[i] - expected[i]) <= 1e-12 * (1 + Math.Abs(expected[i])),
                        $"ta={ta} tb={tb} {m}×{n}×{k}: element {i} is {actual[i]}, expected {expected[i]}");
            }
    }
}

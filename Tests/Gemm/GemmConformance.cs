using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Gemm;

/// <summary>
/// The GEMM family against a float64 reference, written once for every backend: each transpose pair, odd and
/// degenerate sizes, wide leading dimensions and offsets, α/β variants, strided batches and groups.
/// </summary>
public abstract class GemmConformance
{
    private const double Tolerance = 1e-5;

    protected abstract Backend Backend { get; }

    public static TheoryData<int, int, int> Sizes => new()
    {
        { 1, 1, 1 }, { 1, 7, 33 }, { 7, 1, 33 }, { 7, 33, 1 }, { 2, 3, 4 }, { 13, 17, 19 }, { 33, 33, 33 },
        { 12, 32, 384 }, { 24, 64, 385 }, { 25, 65, 7 }, { 64, 257, 31 }, { 257, 7, 129 }, { 100, 600, 50 },
        { 130, 530, 400 }, { 1, 257, 300 }, { 257, 1, 300 }, { 3, 2, 1000 }, { 61, 16, 900 }, { 40, 1030, 16 },
        // Small, but with A's or B's rows 1024 floats apart or more: those operands are packed on the CPU.
        { 20, 30, 1100 }, { 20, 1100, 30 },
        // Above the CPU's direct-operand limit (2^26 multiply-adds; the sizes above are below it): packed panels.
        { 301, 290, 800 },
    };

    [Theory]
    [MemberData(nameof(Sizes))]
    public void EveryTransposePairMatchesFloat64(int m, int n, int k)
    {
        foreach (bool ta in new[] { false, true })
            foreach (bool tb in new[] { false, true })
                Check(ta, tb, m, n, k, alpha: 1f, beta: 0f, padA: 0, padB: 0, padC: 0, offset: 0, seed: m * 31 + n * 7 + k);
    }

    [Theory]
    [InlineData(1f, 0f)]
    [InlineData(0.5f, 2f)]
    [InlineData(-1.5f, 1f)]
    [InlineData(0f, 0.5f)]
    [InlineData(0f, 0f)]
    [InlineData(2f, -0.25f)]
    public void AlphaBetaVariantsWithWideLeadingDimensionsAndOffsets(float alpha, float beta)
    {
        foreach (var (m, n, k) in new[] { (37, 45, 70), (1, 50, 60), (50, 1, 60), (100, 300, 513) })
            foreach (bool ta in new[] { false, true })
                foreach (bool tb in new[] { false, true })
                    Check(ta, tb, m, n, k, alpha, beta, padA: 3, padB: 5, padC: 7, offset: 11, seed: m + n + k);
    }

    [Fact]
    public void BetaZeroIgnoresNaNInC()
    {
        foreach (var (m, n, k) in new[] { (20, 40, 30), (1, 40, 30), (40, 1, 30), (5, 6, 0) })
        {
            using var a = Backend.FromArray(Reference.Random(m * k, 1), m, k);
            using var b = Backend.FromArray(Reference.Random(k * n, 2), k, n);
            using var c = Backend.Allocate(m, n);
            Backend.Fill(c, float.NaN);
            Backend.MatMul(c, a, b);
            Assert.All(c.ToArray(), v => Assert.True(float.IsFinite(v)));
        }
    }

    [Fact]
    public void ZeroDepthScalesC()
    {
        using var a = Backend.Allocate(4, 0);
        using var b = Backend.Allocate(0, 3);
        using var c = Backend.FromArray([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 4, 3);
        Backend.MatMul(c, a, b, beta: 0.5f);
        Assert.Equal([0.5f, 1, 1.5f, 2, 2.5f, 3, 3.5f, 4, 4.5f, 5, 5.5f, 6], c.ToArray());
    }

    [Fact]
    public void TallProblemSplitIntoRowChunksMatches()
    {
        // M·K above the packed-A cap (4 Mi floats) forces row chunks and several waves.
        Check(false, false, 1100, 24, 4000, 1f, 0f, 0, 0, 0, 0, seed: 5);
        Check(true, true, 1100, 24, 4000, 0.75f, 1f, 0, 0, 0, 0, seed: 6);
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void StridedBatchedMatchesPerBatchReference(bool ta, bool tb)
    {
        const int batches = 4, m = 19, n = 45, k = 33;
        int lda = (ta ? m : k) + 2, ldb = (tb ? k : n) + 1, ldc = n + 3;
        long sA = (long)(ta ? k : m) * lda + 5, sB = 0 /* one shared B, as a shared weight */, sC = (long)m * ldc + 4;
        var av = Reference.Random((int)(sA * batches), 11);
        var bv = Reference.Random((ta ? 1 : 1) * (tb ? n : k) * ldb, 12);
        var cv = Reference.Random((int)(sC * batches), 13);
        using var a = Backend.FromArray(av, av.Length);
        using var b = Backend.FromArray(bv, bv.Length);
        using var c = Backend.FromArray(cv, cv.Length);
        var expected = Reference.ToDouble(cv);
        for (int i = 0; i < batches; i++)
            Reference.Gemm(ta, tb, m, n, k, 0.5, av, i * sA, lda, bv, 0, ldb, -1, expected, i * sC, ldc);
        var p = Problem(ta, tb, m, n, k, 0.5f, -1f, a, 0, lda, b, 0, ldb, c, 0, ldc);
        Backend.GemmStridedBatched(p, sA, sB, sC, batches);
        Assert.True(Reference.RelativeError(c.ToArray(), expected) <= Tolerance);
    }

    [Fact]
    public void GroupedMatchesEachProblemAlone()
    {
        // The many-adapters shape: different ranks side by side, plus GEMV and transposed members.
        var shapes = new (bool ta, bool tb, int m, int n, int k)[]
        {
            (false, true, 37, 8, 96), (false, false, 37, 96, 8), (false, true, 5, 16, 96), (true, false, 64, 4, 50),
            (false, false, 1, 96, 16), (false, true, 70, 1, 33), (true, true, 9, 130, 64), (false, false, 0, 5, 5),
        };
        var tensors = new List<Tensor>();
        var problems = new GemmProblem[shapes.Length];
        var expected = new double[shapes.Length][];
        try
        {
            for (int i = 0; i < shapes.Length; i++)
            {
                var (ta, tb, m, n, k) = shapes[i];
                var av = Reference.Random(Math.Max(1, m * k), 100 + i);
                var bv = Reference.Random(Math.Max(1, k * n), 200 + i);
                var cv = Reference.Random(Math.Max(1, m * n), 300 + i);
                var a = Backend.FromArray(av, av.Length); tensors.Add(a);
                var b = Backend.FromArray(bv, bv.Length); tensors.Add(b);
                var c = Backend.FromArray(cv, cv.Length); tensors.Add(c);
                int lda = Math.Max(1, ta ? m : k), ldb = Math.Max(1, tb ? k : n), ldc = Math.Max(1, n);
                problems[i] = Problem(ta, tb, m, n, k, 1.25f, i % 2 == 0 ? 0f : 1f, a, 0, lda, b, 0, ldb, c, 0, ldc);
                expected[i] = Reference.ToDouble(cv);
                Reference.Gemm(ta, tb, m, n, k, 1.25, av, 0, lda, bv, 0, ldb, i % 2 == 0 ? 0 : 1, expected[i], 0, ldc);
            }
            Backend.GemmGrouped(problems);
            for (int i = 0; i < shapes.Length; i++)
                Assert.True(Reference.RelativeError(problems[i].C.ToArray(), expected[i]) <= Tolerance, $"problem {i}");
        }
        finally
        {
            foreach (var t in tensors) t.Dispose();
        }
    }

    [Fact]
    public void MatMulReadsLeadingDimensionsAsRows()
    {
        // [B, T, C] × [OC, C]ᵀ → [B, T, OC], the Linear layer's forward.
        var xv = Reference.Random(2 * 5 * 12, 1);
        var wv = Reference.Random(7 * 12, 2);
        using var x = Backend.FromArray(xv, 2, 5, 12);
        using var w = Backend.FromArray(wv, 7, 12);
        using var y = Backend.Allocate(2, 5, 7);
        Backend.MatMul(y, x, w, transB: Transpose.Yes);
        var expected = new double[70];
        Reference.Gemm(false, true, 10, 7, 12, 1, xv, 0, 12, wv, 0, 12, 0, expected, 0, 7);
        Assert.True(Reference.RelativeError(y.ToArray(), expected) <= Tolerance);
    }

    public static TheoryData<int, int, int> BiasSizes => new()
    {
        // Tiled (whole and edge tiles, a partial panel over several depth blocks, above the direct limit, row chunks),
        // one row (GEMV), one column, narrow and tall (computed transposed; inner products), and no depth.
        { 37, 70, 45 }, { 61, 64, 800 }, { 301, 290, 800 }, { 1100, 24, 4000 }, { 1, 50, 60 }, { 50, 1, 60 }, { 200, 5, 40 },
        { 60, 20, 130 }, { 9, 13, 0 },
    };

    [Theory]
    [MemberData(nameof(BiasSizes))]
    public void MatMulAddBiasRoundsAsTheProductThenAddBias(int m, int n, int k)
    {
        foreach (bool ta in new[] { false, true })
            foreach (bool tb in new[] { false, true })
            {
                var av = Reference.Random(m * k, m + k);
                var bv = Reference.Random(k * n, n + k);
                var biasv = Reference.Random(n, m + n);
                using var a = ta ? Backend.FromArray(av, k, m) : Backend.FromArray(av, m, k);
                using var b = tb ? Backend.FromArray(bv, n, k) : Backend.FromArray(bv, k, n);
                using var bias = Backend.FromArray(biasv, n);
                using var fused = Backend.Allocate(m, n);
                using var composed = Backend.Allocate(m, n);
                Backend.Fill(fused, float.NaN); // β = 0: nothing of C is read
                Transpose transA = ta ? Transpose.Yes : Transpose.No, transB = tb ? Transpose.Yes : Transpose.No;
                Backend.MatMulAddBias(fused, a, b, bias, transA, transB);
                Backend.MatMul(composed, a, b, transA, transB);
                Backend.AddBias(composed, composed, bias);
                Assert.Equal(composed.ToArray(), fused.ToArray());
                var expected = new double[m * n];
                Reference.Gemm(ta, tb, m, n, k, 1, av, 0, ta ? m : k, bv, 0, tb ? k : n, 0, expected, 0, n);
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++) expected[i * n + j] += biasv[j];
                Assert.True(Reference.RelativeError(fused.ToArray(), expected) <= Tolerance, $"{m}x{n}x{k} ta={ta} tb={tb}");
            }
    }

    [Fact]
    public void MatMulAddBiasChecksTheBias()
    {
        using var a = Backend.Allocate(4, 6);
        using var b = Backend.Allocate(6, 5);
        using var c = Backend.Allocate(4, 5);
        using var shortBias = Backend.Allocate(4);
        var e = Assert.Throws<ArgumentException>(() => Backend.MatMulAddBias(c, a, b, shortBias));
        Assert.Equal("bias", e.ParamName);
        using var wrongB = Backend.Allocate(7, 5);
        using var bias = Backend.Allocate(5);
        Assert.Equal("b", Assert.Throws<ArgumentException>(() => Backend.MatMulAddBias(c, a, wrongB, bias)).ParamName);
    }

    public static TheoryData<int, int, int> PackedSizes => new()
    {
        { 1, 1, 1 }, { 1, 33, 7 }, { 1, 2304, 768 }, { 1, 70, 800 }, { 2, 3, 4 }, { 3, 1, 50 }, { 13, 17, 19 }, { 32, 96, 385 },
        { 32, 100, 768 }, { 48, 64, 33 }, { 49, 65, 400 }, { 100, 600, 50 }, { 130, 530, 400 }, { 257, 7, 129 }, { 61, 16, 900 },
    };

    [Theory]
    [MemberData(nameof(PackedSizes))]
    public void PackedProductMatchesFloat64(int m, int n, int k)
    {
        foreach (bool tb in new[] { false, true })
            CheckPacked(tb, m, n, k, alpha: 1f, beta: 0f, padA: 0, padC: 0, offset: 0, seed: m * 31 + n * 7 + k);
    }

    [Theory]
    [InlineData(0.5f, 2f)]
    [InlineData(-1.5f, 1f)]
    [InlineData(0f, 0.5f)]
    [InlineData(2f, -0.25f)]
    public void PackedProductAlphaBetaWithWideLeadingDimensionsAndOffsets(float alpha, float beta)
    {
        foreach (var (m, n, k) in new[] { (1, 50, 60), (5, 45, 70), (37, 33, 513), (100, 300, 513) })
            foreach (bool tb in new[] { false, true })
                CheckPacked(tb, m, n, k, alpha, beta, padA: 3, padC: 7, offset: 11, seed: m + n + k);
    }

    [Fact]
    public void RepackReadsTheNewValuesAndChecksTheShape()
    {
        var w1 = Reference.Random(40 * 24, 1);
        var w2 = Reference.Random(40 * 24, 2);
        var xv = Reference.Random(5 * 24, 3);
        using var wa = Backend.FromArray(w1, 40, 24); // a [OC, C] weight: B = Wᵀ [24, 40]
        using var wb = Backend.FromArray(w2, 40, 24);
        using var x = Backend.FromArray(xv, 5, 24);
        using var y = Backend.Allocate(5, 40);
        using var packed = Backend.PackMatrix(wa, Transpose.Yes);
        Assert.Equal((24, 40), (packed.Rows, packed.Columns));
        Backend.Repack(packed, wb, Transpose.Yes);
        Backend.GemmPacked(5, 1f, x, 0, 24, packed, 0f, y, 0, 40);
        var expected = new double[5 * 40];
        Reference.Gemm(false, true, 5, 40, 24, 1, xv, 0, 24, w2, 0, 24, 0, expected, 0, 40);
        Assert.True(Reference.RelativeError(y.ToArray(), expected) <= Tolerance);
        var e = Assert.Throws<ArgumentException>(() => Backend.Repack(packed, wb));
        Assert.Contains("source", e.Message);
        Assert.Contains("24×40", e.Message);
        using var three = Backend.Allocate(2, 3, 4);
        Assert.Contains("rank 2", Assert.Throws<ArgumentException>(() => Backend.PackMatrix(three)).Message);
        // A too short for M rows of K, and C sharing A's memory, are refused as for any GEMM.
        Assert.Contains("problem.A", Assert.Throws<ArgumentException>(() => Backend.GemmPacked(6, 1f, x, 0, 24, packed, 0f, y, 0, 40)).Message);
        using var shared = Backend.Allocate(1000);
        Assert.Contains("share memory", Assert.Throws<ArgumentException>(() => Backend.GemmPacked(2, 1f, shared, 0, 24, packed, 0f, shared, 10, 40)).Message);
        packed.Dispose();
        Assert.Throws<ObjectDisposedException>(() => Backend.GemmPacked(5, 1f, x, 0, 24, packed, 0f, y, 0, 40));
    }

    /// <summary>C = α·A·op(W) + β·C with op(W) packed: W stored [K, N], or [N, K] and transposed.</summary>
    private void CheckPacked(bool tb, int m, int n, int k, float alpha, float beta, int padA, int padC, int offset, int seed)
    {
        int lda = k + padA, ldc = n + padC, ldb = tb ? k : n;
        int lenA = offset + m * lda, lenC = offset + m * ldc;
        var av = Reference.Random(lenA, seed);
        var bv = Reference.Random(k * n, seed + 1);
        var cv = Reference.Random(lenC, seed + 2);
        using var a = Backend.FromArray(av, av.Length);
        using var w = tb ? Backend.FromArray(bv, n, k) : Backend.FromArray(bv, k, n);
        using var c = Backend.FromArray(cv, cv.Length);
        using var packed = Backend.PackMatrix(w, tb ? Transpose.Yes : Transpose.No);
        var expected = Reference.ToDouble(cv);
        Reference.Gemm(false, tb, m, n, k, alpha, av, offset, lda, bv, 0, ldb, beta, expected, offset, ldc);
        Backend.GemmPacked(m, alpha, a, offset, lda, packed, beta, c, offset, ldc);
        double err = Reference.RelativeError(c.ToArray(), expected);
        Assert.True(err <= Tolerance, $"packed tb={tb} {m}x{n}x{k} α={alpha} β={beta}: relative error {err:E2}");
    }

    private void Check(bool ta, bool tb, int m, int n, int k, float alpha, float beta,
        int padA, int padB, int padC, int offset, int seed)
    {
        int lda = Math.Max(1, (ta ? m : k) + padA), ldb = Math.Max(1, (tb ? k : n) + padB), ldc = Math.Max(1, n + padC);
        int lenA = offset + (ta ? k : m) * lda, lenB = offset + (tb ? n : k) * ldb, lenC = offset + m * ldc;
        var av = Reference.Random(Math.Max(1, lenA), seed);
        var bv = Reference.Random(Math.Max(1, lenB), seed + 1);
        var cv = Reference.Random(Math.Max(1, lenC), seed + 2);
        using var a = Backend.FromArray(av, av.Length);
        using var b = Backend.FromArray(bv, bv.Length);
        using var c = Backend.FromArray(cv, cv.Length);
        var expected = Reference.ToDouble(cv);
        Reference.Gemm(ta, tb, m, n, k, alpha, av, offset, lda, bv, offset, ldb, beta, expected, offset, ldc);
        Backend.Gemm(ta ? Transpose.Yes : Transpose.No, tb ? Transpose.Yes : Transpose.No, m, n, k, alpha,
            a, offset, lda, b, offset, ldb, beta, c, offset, ldc);
        double err = Reference.RelativeError(c.ToArray(), expected);
        Assert.True(err <= Tolerance, $"ta={ta} tb={tb} {m}x{n}x{k} α={alpha} β={beta}: relative error {err:E2}");
    }

    internal static GemmProblem Problem(bool ta, bool tb, int m, int n, int k, float alpha, float beta,
        Tensor a, long offA, int lda, Tensor b, long offB, int ldb, Tensor c, long offC, int ldc) => new()
        {
            TransA = ta ? Transpose.Yes : Transpose.No, TransB = tb ? Transpose.Yes : Transpose.No,
            M = m, N = n, K = k, Alpha = alpha, Beta = beta,
            A = a, OffsetA = offA, Lda = lda, B = b, OffsetB = offB, Ldb = ldb, C = c, OffsetC = offC, Ldc = ldc,
        };
}

using Xunit;

namespace LoraRuntime.Tests.Linalg;

public abstract partial class LinalgConformance
{
    /// <summary>The rank-r truncated SVD of the m×n <paramref name="a"/>, as host arrays.</summary>
    protected (float[] U, float[] S, float[] Vt) TruncatedSvd(float[] a, int m, int n, int rank, TruncatedSvdOptions options)
    {
        Tensor u = Output(m, rank), s = Output(rank), vt = Output(rank, n);
        Backend.TruncatedSvd(u, s, vt, Upload(a, m, n), options);
        return (u.ToArray(), s.ToArray(), vt.ToArray());
    }

    /// <summary>A matrix with singular values 0.8^i (i &lt; 60) and the relative error of its best rank-r approximation.</summary>
    private static (float[] A, double Best) Decaying(int m, int n, int rank, int seed)
    {
        var s = new double[Math.Min(60, Math.Min(m, n))];
        for (int i = 0; i < s.Length; i++) s[i] = Math.Pow(0.8, i);
        double tail = 0, all = 0;
        for (int i = 0; i < s.Length; i++)
        {
            all += s[i] * s[i];
            if (i >= rank) tail += s[i] * s[i];
        }
        return (LinalgReference.WithSingularValues(m, n, s, seed), Math.Sqrt(tail / all));
    }

    [Theory]
    [InlineData(300, 200, 10, 10, 2)]
    [InlineData(200, 300, 16, 10, 2)]
    [InlineData(250, 250, 5, 5, 1)]
    [InlineData(400, 120, 8, 4, 3)]
    public void TruncatedSvdIsNearTheBestRankKApproximation(int m, int n, int rank, int oversampling, int powerIterations)
    {
        var (a, best) = Decaying(m, n, rank, m + n + rank);
        var svd = TruncatedSvd(a, m, n, rank, new TruncatedSvdOptions(oversampling, powerIterations, Seed: 42));
        double error = LinalgReference.ReconstructionError(a, m, n, svd.U, svd.S, svd.Vt);
        Assert.True(error <= 1.05 * best, $"rank {rank}: error {error:E4} is not within 5% of the best {best:E4}");
        Assert.True(LinalgReference.ColumnOrthogonality(svd.U, m, rank) <= Orthogonality);
        Assert.True(LinalgReference.RowOrthogonality(svd.Vt, rank, n) <= Orthogonality);
        AssertSignConvention(svd.U, m, rank, "truncated");
        for (int i = 0; i < rank; i++)
            Assert.True(Math.Abs(svd.S[i] - Math.Pow(0.8, i)) <= 1e-3 * Math.Pow(0.8, i), $"s[{i}] = {svd.S[i]}, expected {Math.Pow(0.8, i)}");
    }

    [Fact]
    public void OptionsDefaultToTheDocumentedValues()
    {
        Assert.Equal(new TruncatedSvdOptions(10, 2, 0), new TruncatedSvdOptions());
        Assert.Equal(10, new TruncatedSvdOptions(Seed: 3).Oversampling);
    }

    [Fact]
    public void TruncatedSvdIsDeterministicForASeed()
    {
        var (a, _) = Decaying(150, 120, 6, 1);
        var first = TruncatedSvd(a, 150, 120, 6, new TruncatedSvdOptions(Seed: 7));
        var again = TruncatedSvd(a, 150, 120, 6, new TruncatedSvdOptions(Seed: 7));
        var other = TruncatedSvd(a, 150, 120, 6, new TruncatedSvdOptions(Oversampling: 2, PowerIterations: 0, Seed: 8));
        Assert.Equal(first.U, again.U);
        Assert.Equal(first.S, again.S);
        Assert.Equal(first.Vt, again.Vt);
        Assert.NotEqual(first.S, other.S);
    }

    [Fact]
    public void TruncatedSvdOfFullRankMatchesTheExactSvd()
    {
        // With r = min(m, n) the sample spans the whole range: the result is the exact SVD.
        const int m = 60, n = 25;
        var a = LinalgReference.GaussianMatrix(m, n, 4);
        var svd = TruncatedSvd(a, m, n, n, new TruncatedSvdOptions(Oversampling: 5, PowerIterations: 0));
        AssertSvd(a, m, n, svd, WellConditioned, "truncated at full rank");
    }

    [Theory]
    [InlineData(1, 9, 1)]
    [InlineData(9, 1, 1)]
    [InlineData(30, 20, 3)]
    public void TruncatedSvdOfDegenerateMatrices(int m, int n, int rank)
    {
        foreach (float value in new[] { 0f, 2.5f })
        {
            var a = Enumerable.Repeat(value, m * n).ToArray();
            var svd = TruncatedSvd(a, m, n, rank, new TruncatedSvdOptions());
            Assert.True(LinalgReference.ReconstructionError(a, m, n, svd.U, svd.S, svd.Vt) <= WellConditioned);
            Assert.True(LinalgReference.ColumnOrthogonality(svd.U, m, rank) <= Orthogonality);
            Assert.True(LinalgReference.RowOrthogonality(svd.Vt, rank, n) <= Orthogonality);
            Assert.Equal(value * Math.Sqrt(m * n), svd.S[0], 1e-5 * Math.Max(1, svd.S[0]));
        }
    }
}

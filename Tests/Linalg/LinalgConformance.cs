using Xunit;

namespace LoraRuntime.Tests.Linalg;

/// <summary>
/// QR, SVD and truncated SVD written once against <see cref="Backend"/>; every backend gets a sealed subclass.
/// Results are checked through float64 residuals (‖A − U·S·Vᵀ‖/‖A‖, ‖UᵀU − I‖_F) and against the singular values of
/// a float64 one-sided Jacobi reference (<see cref="LinalgReference"/>).
/// </summary>
public abstract partial class LinalgConformance : IDisposable
{
    internal const double WellConditioned = 1e-5, IllConditioned = 1e-4, Orthogonality = 1e-5, SingularValueRelative = 1e-5;
    private readonly List<Tensor> _tensors = [];
    private Backend? _backend;

    /// <summary>A fresh backend of the kind under test.</summary>
    protected abstract Backend CreateBackend();

    /// <summary>The backend under test (created on first use, disposed with the test).</summary>
    protected Backend Backend => _backend ??= CreateBackend();

    /// <summary>A tensor holding <paramref name="values"/>, disposed with the test.</summary>
    protected Tensor Upload(float[] values, params int[] dims) => Track(Backend.FromArray(values, dims));

    /// <summary>A tensor of <paramref name="dims"/> filled with NaN (so that unwritten outputs show), disposed with the test.</summary>
    protected Tensor Output(params int[] dims)
    {
        var t = Track(Backend.Allocate(dims));
        Backend.Fill(t, float.NaN);
        return t;
    }

    private Tensor Track(Tensor t)
    {
        _tensors.Add(t);
        return t;
    }

    /// <summary>The thin SVD of the m×n <paramref name="a"/>, as host arrays.</summary>
    protected (float[] U, float[] S, float[] Vt) Svd(float[] a, int m, int n)
    {
        int k = Math.Min(m, n);
        Tensor u = Output(m, k), s = Output(k), vt = Output(k, n);
        Backend.Svd(u, s, vt, Upload(a, m, n));
        return (u.ToArray(), s.ToArray(), vt.ToArray());
    }

    /// <summary>Every property of a thin SVD, with the tolerance on the reconstruction.</summary>
    internal static void AssertSvd(float[] a, int m, int n, (float[] U, float[] S, float[] Vt) svd, double reconstruction, string what)
    {
        int k = Math.Min(m, n);
        var (u, s, vt) = svd;
        double error = LinalgReference.ReconstructionError(a, m, n, u, s, vt);
        Assert.True(error <= reconstruction, $"{what}: ‖A − U·S·Vᵀ‖/‖A‖ = {error:E2} > {reconstruction:E0}");
        double uo = LinalgReference.ColumnOrthogonality(u, m, k), vo = LinalgReference.RowOrthogonality(vt, k, n);
        Assert.True(uo <= Orthogonality, $"{what}: ‖UᵀU − I‖ = {uo:E2}");
        Assert.True(vo <= Orthogonality, $"{what}: ‖VᵀV − I‖ = {vo:E2}");
        for (int i = 0; i < k; i++)
        {
            Assert.True(s[i] >= 0, $"{what}: s[{i}] = {s[i]} is negative");
            if (i > 0) Assert.True(s[i] <= s[i - 1], $"{what}: s[{i}] = {s[i]} > s[{i - 1}] = {s[i - 1]}");
        }
        AssertSignConvention(u, m, k, what);
        var reference = LinalgReference.SingularValues(a, m, n);
        for (int i = 0; i < k; i++)
        {
            if (reference[i] < 1e-4 * reference[0] || reference[i] == 0) break;
            double rel = Math.Abs(s[i] - reference[i]) / reference[i];
            Assert.True(rel <= SingularValueRelative, $"{what}: s[{i}] = {s[i]:R}, reference {reference[i]:R} (relative error {rel:E2})");
        }
    }

    /// <summary>The largest-magnitude entry of each column of u (the first on a tie) is positive.</summary>
    internal static void AssertSignConvention(float[] u, int m, int k, string what)
    {
        for (int j = 0; j < k; j++)
        {
            int best = 0;
            for (int i = 1; i < m; i++)
                if (Math.Abs(u[i * k + j]) > Math.Abs(u[best * k + j])) best = i;
            Assert.True(u[best * k + j] >= 0, $"{what}: column {j} of U has its largest entry {u[best * k + j]} negative");
        }
    }

    public static TheoryData<int, int> Shapes => new()
    {
        { 1, 1 }, { 1, 7 }, { 7, 1 }, { 2, 2 }, { 5, 3 }, { 3, 5 }, { 40, 40 }, { 64, 17 }, { 17, 64 }, { 90, 70 }, { 70, 90 },
        { 130, 130 }, { 200, 90 }, { 61, 190 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void SvdOfGaussianMatrices(int m, int n)
    {
        var a = LinalgReference.GaussianMatrix(m, n, m * 1000 + n);
        AssertSvd(a, m, n, Svd(a, m, n), WellConditioned, $"Gaussian {m}×{n}");
    }

    [Theory]
    [InlineData(80, 60)]
    [InlineData(60, 80)]
    [InlineData(150, 150)]
    [InlineData(300, 40)]
    public void SvdOfIllConditionedMatrices(int m, int n)
    {
        // Singular values spread over six decades (κ = 1e6): those ≥ 1e-4·σ₁ must stay accurate to 1e-5 of themselves.
        int k = Math.Min(m, n);
        var s = new double[k];
        for (int i = 0; i < k; i++) s[i] = Math.Pow(10, -6.0 * i / Math.Max(1, k - 1));
        var a = LinalgReference.WithSingularValues(m, n, s, m + 7 * n);
        AssertSvd(a, m, n, Svd(a, m, n), IllConditioned, $"κ = 1e6, {m}×{n}");
    }

    [Theory]
    [InlineData(50, 30, 5)]
    [InlineData(30, 50, 1)]
    [InlineData(120, 120, 17)]
    public void SvdOfRankDeficientMatrices(int m, int n, int rank)
    {
        var s = new double[rank];
        for (int i = 0; i < rank; i++) s[i] = rank - i;
        var a = LinalgReference.WithSingularValues(m, n, s, rank);
        var svd = Svd(a, m, n);
        AssertSvd(a, m, n, svd, WellConditioned, $"rank {rank}, {m}×{n}");
        for (int i = rank; i < Math.Min(m, n); i++)
            Assert.True(svd.S[i] <= 1e-5 * svd.S[0], $"s[{i}] = {svd.S[i]} should vanish beyond the rank {rank}");
    }

    [Theory]
    [InlineData(6, 4)]
    [InlineData(4, 6)]
    [InlineData(33, 33)]
    public void SvdOfZeroMatrix(int m, int n)
    {
        var a = new float[m * n];
        var svd = Svd(a, m, n);
        Assert.All(svd.S, v => Assert.Equal(0f, v));
        AssertSvd(a, m, n, svd, 0, $"zero {m}×{n}");
    }

    [Theory]
    [InlineData(9, 5)]
    [InlineData(5, 9)]
    [InlineData(100, 100)]
    public void SvdOfConstantMatrix(int m, int n)
    {
        var a = Enumerable.Repeat(0.75f, m * n).ToArray();
        var svd = Svd(a, m, n);
        AssertSvd(a, m, n, svd, WellConditioned, $"constant {m}×{n}");
        Assert.Equal(0.75 * Math.Sqrt(m * n), svd.S[0], 1e-5 * svd.S[0]);
        // Rank one: U's first column is 1/√m everywhere, positive by the sign convention.
        for (int i = 0; i < m; i++) Assert.Equal(1 / Math.Sqrt(m), svd.U[i * Math.Min(m, n)], 1e-6);
    }

    [Theory]
    [InlineData(200, 150)]
    [InlineData(150, 200)]
    [InlineData(120, 120)]
    public void SvdOfMatricesWithRepeatedSingularValues(int m, int n)
    {
        // Three values, each repeated a third of the time: the divide-and-conquer merges deflate most poles.
        int k = Math.Min(m, n);
        var s = new double[k];
        for (int i = 0; i < k; i++) s[i] = i < k / 3 ? 3 : i < 2 * k / 3 ? 1 : 0.5;
        var a = LinalgReference.WithSingularValues(m, n, s, 11);
        AssertSvd(a, m, n, Svd(a, m, n), WellConditioned, $"repeated values, {m}×{n}");
    }

    [Theory]
    [InlineData(100, 1)]
    [InlineData(64, 0)]
    public void SvdOfDiagonalMatrices(int n, int graded)
    {
        // The identity (every pole coincides) and a graded diagonal 2^-i in shuffled order (nothing to reduce).
        var a = new float[n * n];
        var order = Enumerable.Range(0, n).OrderBy(i => (i * 37) % n).ToArray();
        for (int i = 0; i < n; i++) a[i * n + i] = graded == 1 ? MathF.Pow(2, -order[i] % 24) : 1;
        AssertSvd(a, n, n, Svd(a, n, n), WellConditioned, graded == 1 ? "graded diagonal" : "identity");
    }

    [Theory]
    [InlineData(1e35f)]
    [InlineData(1e-36f)]
    public void SvdQrAndTruncatedSvdKeepFloat32sExtremes(float scale)
    {
        // Near both ends of float32's range: nothing over- or underflows on the way (the float64 work has room).
        const int m = 70, n = 45;
        var a = LinalgReference.GaussianMatrix(m, n, 13);
        for (int i = 0; i < a.Length; i++) a[i] *= scale;
        AssertSvd(a, m, n, Svd(a, m, n), WellConditioned, $"scaled by {scale}");
        var (q, r) = Qr(a, m, n);
        Assert.True(LinalgReference.ProductError(a, m, n, q, r, n) <= WellConditioned);
        var t = TruncatedSvd(a, m, n, n, new TruncatedSvdOptions());
        Assert.True(LinalgReference.ReconstructionError(a, m, n, t.U, t.S, t.Vt) <= WellConditioned);
    }

    [Fact]
    public void SvdIsDeterministic()
    {
        var a = LinalgReference.GaussianMatrix(120, 75, 3);
        var first = Svd(a, 120, 75);
        var second = Svd(a, 120, 75);
        Assert.Equal(first.U, second.U);
        Assert.Equal(first.S, second.S);
        Assert.Equal(first.Vt, second.Vt);
    }

    [Fact]
    public void SvdOfEmptyMatrixDoesNothing()
    {
        Backend.Svd(Output(0, 0), Output(0), Output(0, 5), Upload([], 0, 5));
        Backend.Svd(Output(4, 0), Output(0), Output(0, 0), Upload([], 4, 0));
    }

    [Fact]
    public void SvdReturnsItsScratchToThePool()
    {
        var a = Upload(LinalgReference.GaussianMatrix(70, 50, 9), 70, 50);
        Tensor u = Output(70, 50), s = Output(50), vt = Output(50, 50);
        Backend.Svd(u, s, vt, a);
        long inUse = Backend.Pool.Stats.BytesInUse;
        Backend.Svd(u, s, vt, a);
        Assert.Equal(inUse, Backend.Pool.Stats.BytesInUse);
    }

    public void Dispose()
    {
        foreach (var t in _tensors) t.Dispose();
        _backend?.Dispose();
        GC.SuppressFinalize(this);
    }
}

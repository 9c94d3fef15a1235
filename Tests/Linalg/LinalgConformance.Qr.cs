using Xunit;

namespace LoraRuntime.Tests.Linalg;

public abstract partial class LinalgConformance
{
    /// <summary>Q and R of the m×n <paramref name="a"/>, as host arrays.</summary>
    protected (float[] Q, float[] R) Qr(float[] a, int m, int n)
    {
        int k = Math.Min(m, n);
        Tensor q = Output(m, k), r = Output(k, n);
        Backend.Qr(q, r, Upload(a, m, n));
        return (q.ToArray(), r.ToArray());
    }

    private static void AssertQr(float[] a, int m, int n, (float[] Q, float[] R) qr, string what)
    {
        int k = Math.Min(m, n);
        double error = LinalgReference.ProductError(a, m, n, qr.Q, qr.R, k);
        Assert.True(error <= WellConditioned, $"{what}: ‖A − QR‖/‖A‖ = {error:E2}");
        double orthogonality = LinalgReference.ColumnOrthogonality(qr.Q, m, k);
        Assert.True(orthogonality <= Orthogonality, $"{what}: ‖QᵀQ − I‖ = {orthogonality:E2}");
        for (int i = 0; i < k; i++)
        {
            for (int j = 0; j < Math.Min(i, n); j++) Assert.True(qr.R[i * n + j] == 0, $"{what}: R[{i}, {j}] = {qr.R[i * n + j]} below the diagonal");
            Assert.True(qr.R[i * n + i] >= 0, $"{what}: R[{i}, {i}] = {qr.R[i * n + i]} is negative");
        }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    [InlineData(300, 100)]
    [InlineData(100, 300)]
    public void QrOfGaussianMatrices(int m, int n)
    {
        var a = LinalgReference.GaussianMatrix(m, n, 17 * m + n);
        AssertQr(a, m, n, Qr(a, m, n), $"Gaussian {m}×{n}");
    }

    [Theory]
    [InlineData(40, 25, 3)]
    [InlineData(25, 40, 3)]
    [InlineData(80, 80, 0)]
    public void QrOfRankDeficientAndZeroMatrices(int m, int n, int rank)
    {
        var s = new double[rank];
        for (int i = 0; i < rank; i++) s[i] = 1 + i;
        var a = rank == 0 ? new float[m * n] : LinalgReference.WithSingularValues(m, n, s, 5);
        AssertQr(a, m, n, Qr(a, m, n), $"rank {rank}, {m}×{n}");
    }

    [Fact]
    public void QrOfIllConditionedMatrix()
    {
        var s = new double[60];
        for (int i = 0; i < s.Length; i++) s[i] = Math.Pow(10, -6.0 * i / 59);
        var a = LinalgReference.WithSingularValues(150, 60, s, 8);
        AssertQr(a, 150, 60, Qr(a, 150, 60), "κ = 1e6, 150×60");
    }
}

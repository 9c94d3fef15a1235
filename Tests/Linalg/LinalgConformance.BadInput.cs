using Xunit;

namespace LoraRuntime.Tests.Linalg;

public abstract partial class LinalgConformance
{
    /// <summary>
    /// <paramref name="call"/> throws an <see cref="ArgumentException"/> for <paramref name="parameter"/> whose message
    /// names it and contains <paramref name="fragment"/>, and leaves <paramref name="outputs"/> untouched.
    /// </summary>
    private static void Rejects(string parameter, string fragment, Action call, params Tensor[] outputs)
    {
        var before = outputs.Select(t => t.ToArray()).ToArray();
        var error = Assert.ThrowsAny<ArgumentException>(call);
        Assert.Equal(parameter, error.ParamName);
        Assert.Contains(parameter, error.Message);
        Assert.Contains(fragment, error.Message);
        for (int i = 0; i < outputs.Length; i++) Assert.Equal(before[i], outputs[i].ToArray());
    }

    [Theory]
    [InlineData(float.NaN, "NaN")]
    [InlineData(float.PositiveInfinity, "Infinity")]
    [InlineData(float.NegativeInfinity, "-Infinity")]
    public void NonFiniteInputIsRejectedByEveryMethod(float bad, string shown)
    {
        var values = LinalgReference.GaussianMatrix(12, 9, 1);
        values[5 * 9 + 4] = bad;
        var a = Upload(values, 12, 9);
        Tensor u = Output(12, 9), s = Output(9), vt = Output(9, 9), q = Output(12, 9), r = Output(9, 9);
        Rejects("a", "element [5, 4]", () => Backend.Svd(u, s, vt, a), u, s, vt);
        Rejects("a", shown, () => Backend.Qr(q, r, a), q, r);
        Tensor tu = Output(12, 3), ts = Output(3), tvt = Output(3, 9);
        Rejects("a", "finite", () => Backend.TruncatedSvd(tu, ts, tvt, a, new TruncatedSvdOptions()), tu, ts, tvt);
    }

    [Fact]
    public void WrongShapesAreRejectedByName()
    {
        var a = Upload(LinalgReference.GaussianMatrix(8, 5, 2), 8, 5);
        Tensor u = Output(8, 5), s = Output(5), vt = Output(5, 5);
        Rejects("u", "[8, 5]", () => Backend.Svd(Output(5, 8), s, vt, a), s, vt);
        Rejects("s", "[5]", () => Backend.Svd(u, Output(4), vt, a), u, vt);
        Rejects("vt", "[5, 5]", () => Backend.Svd(u, s, Output(5, 8), a), u, s);
        Rejects("a", "matrix", () => Backend.Svd(u, s, vt, Upload(new float[40], 40)), u, s, vt);
        Rejects("a", "matrix", () => Backend.Svd(u, s, vt, Upload(new float[40], 2, 4, 5)), u, s, vt);
        Rejects("q", "[8, 5]", () => Backend.Qr(Output(8, 8), Output(5, 5), a));
        Rejects("r", "[5, 5]", () => Backend.Qr(Output(8, 5), Output(8, 5), a));
        Rejects("u", "share memory", () => Backend.Svd(a, s, vt, a), s, vt);
    }

    [Fact]
    public void TruncatedRankAndOptionsAreChecked()
    {
        var a = Upload(LinalgReference.GaussianMatrix(10, 6, 3), 10, 6);
        Tensor u = Output(10, 2), s = Output(2), vt = Output(2, 6);
        Rejects("s", "≤ min(m, n) = 6", () => Backend.TruncatedSvd(Output(10, 7), Output(7), Output(7, 6), a, new TruncatedSvdOptions()));
        Rejects("s", "≥ 1", () => Backend.TruncatedSvd(Output(10, 0), Output(0), Output(0, 6), a, new TruncatedSvdOptions()));
        Rejects("s", "vector", () => Backend.TruncatedSvd(u, Output(1, 2), vt, a, new TruncatedSvdOptions()), u, vt);
        Rejects("u", "[10, 2]", () => Backend.TruncatedSvd(Output(10, 3), s, vt, a, new TruncatedSvdOptions()), s, vt);
        Rejects("vt", "[2, 6]", () => Backend.TruncatedSvd(u, s, Output(2, 5), a, new TruncatedSvdOptions()), u, s);
        Rejects("options", "Oversampling", () => Backend.TruncatedSvd(u, s, vt, a, new TruncatedSvdOptions(Oversampling: -1)), u, s, vt);
        Rejects("options", "PowerIterations", () => Backend.TruncatedSvd(u, s, vt, a, new TruncatedSvdOptions(PowerIterations: -1)), u, s, vt);
        Rejects("options", "PowerIterations", () => Backend.TruncatedSvd(u, s, vt, a, new TruncatedSvdOptions(PowerIterations: 101)), u, s, vt);
        // An oversampling far beyond the matrix is clamped to min(m, n), not allocated.
        Backend.TruncatedSvd(u, s, vt, a, new TruncatedSvdOptions(Oversampling: int.MaxValue));
        Assert.All(s.ToArray(), v => Assert.True(float.IsFinite(v)));
    }
}

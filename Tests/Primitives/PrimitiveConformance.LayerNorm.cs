using Xunit;

namespace LoraRuntime.Tests.Primitives;

// Layer norm forward and backward over rows of C = 1..67, wider rows, rank 3 and a parallel size, against float64.
public abstract partial class PrimitiveConformance
{
    private const float LayerNormEpsilon = 1e-5f;

    /// <summary>(rows, C) pairs: C 1..67 over 3 rows, wide odd rows, and a size above the parallel threshold.</summary>
    private static List<(int Rows, int Cols)> LayerNormShapes()
    {
        var shapes = new List<(int, int)>();
        for (int cols = 1; cols <= 67; cols++) shapes.Add((3, cols));
        foreach (int cols in new[] { 128, 255, 257, 768, 1001 }) shapes.Add((2, cols));
        shapes.Add((333, 211));
        return shapes;
    }

    /// <summary>Inputs centred away from 0 (mean ≈ 3) so that a one-pass variance would lose digits.</summary>
    private static (float[] X, float[] W, float[] B) LayerNormInputs(Random rng, int rows, int cols) =>
        (Uniform(rng, rows * cols, 1, 5), Uniform(rng, cols, 0.5f, 1.5f), Uniform(rng, cols, -1, 1));

    [Fact]
    public void LayerNormForward_matches_float64_on_every_shape()
    {
        var rng = new Random(20);
        foreach (var (rows, cols) in LayerNormShapes())
        {
            var (x, w, b) = LayerNormInputs(rng, rows, cols);
            var output = Upload(new float[x.Length], rows, cols);
            var mean = Upload(new float[rows], rows);
            var rstd = Upload(new float[rows], rows);
            Backend.LayerNormForward(output, mean, rstd, Upload(x, rows, cols), Upload(w, cols), Upload(b, cols), LayerNormEpsilon);
            var expected = Reference.LayerNorm(Expect.Widen(x), Expect.Widen(w), Expect.Widen(b), rows, cols, LayerNormEpsilon);
            string what = $"[{rows}, {cols}]";
            Expect.Close(mean.ToArray(), expected.Mean, 1e-6, 0, $"LayerNorm mean {what}");
            Expect.Close(rstd.ToArray(), expected.Rstd, 2e-6, 0, $"LayerNorm rstd {what}");
            // Outputs are O(1) sums of (x − mean)·rstd·w and b: the error is absolute, a few ulps of 1.
            Expect.Close(output.ToArray(), expected.Output, 1e-6, 1e-6, $"LayerNorm output {what}");
        }
    }

    [Fact]
    public void LayerNorm_reads_any_rank_as_rows_by_last_dimension()
    {
        var rng = new Random(21);
        var (x, w, b) = LayerNormInputs(rng, 6, 13);
        var output = Upload(new float[x.Length], 2, 3, 13);
        var mean = Upload(new float[6], 2, 3);
        var rstd = Upload(new float[6], 6);
        Backend.LayerNormForward(output, mean, rstd, Upload(x, 2, 3, 13), Upload(w, 13), Upload(b, 13), LayerNormEpsilon);
        var expected = Reference.LayerNorm(Expect.Widen(x), Expect.Widen(w), Expect.Widen(b), 6, 13, LayerNormEpsilon);
        Expect.Close(output.ToArray(), expected.Output, 1e-6, 1e-6, "LayerNorm [2, 3, 13]");
    }

    [Fact]
    public void LayerNormBackward_accumulates_the_float64_gradients_on_every_shape()
    {
        var rng = new Random(22);
        foreach (var (rows, cols) in LayerNormShapes())
        {
            var (x, w, _) = LayerNormInputs(rng, rows, cols);
            var (_, meanD, rstdD) = Reference.LayerNorm(Expect.Widen(x), Expect.Widen(w), new double[cols], rows, cols, LayerNormEpsilon);
            float[] mean = meanD.Select(v => (float)v).ToArray(), rstd = rstdD.Select(v => (float)v).ToArray();
            float[] dOut = Uniform(rng, x.Length), dxBefore = Uniform(rng, x.Length), dwBefore = Uniform(rng, cols), dbBefore = Uniform(rng, cols);
            var dInput = Upload(dxBefore, rows, cols);
            var dWeight = Upload(dwBefore, cols);
            var dBias = Upload(dbBefore, cols);
            Backend.LayerNormBackward(dInput, dWeight, dBias, Upload(dOut, rows, cols), Upload(x, rows, cols), Upload(w, cols),
                Upload(mean, rows), Upload(rstd, rows));
            var (dx, dw, db) = Reference.LayerNormBackward(Expect.Widen(dOut), Expect.Widen(x), Expect.Widen(w), Expect.Widen(mean),
                Expect.Widen(rstd), rows, cols);
            string what = $"[{rows}, {cols}]";
            Expect.Close(dInput.ToArray(), dx.Select((g, i) => dxBefore[i] + g).ToArray(), 1e-5, 1e-6, $"LayerNorm dInput {what}");
            // dWeight and dBias sum one O(1) term per row: the absolute error grows with the row count.
            double sumAtol = 1e-6 * Math.Sqrt(rows);
            Expect.Close(dWeight.ToArray(), dw.Select((g, i) => dwBefore[i] + g).ToArray(), 1e-6, sumAtol, $"LayerNorm dWeight {what}");
            Expect.Close(dBias.ToArray(), db.Select((g, i) => dbBefore[i] + g).ToArray(), 1e-6, sumAtol, $"LayerNorm dBias {what}");
        }
    }

    [Theory]
    [InlineData(3, 7)]
    [InlineData(2, 1)]
    [InlineData(2, 19)]
    public void LayerNorm_reference_gradients_match_finite_differences(int rows, int cols)
    {
        var rng = new Random(23);
        var (xf, wf, bf) = LayerNormInputs(rng, rows, cols);
        double[] x = Expect.Widen(xf), w = Expect.Widen(wf), b = Expect.Widen(bf), dOut = Expect.Widen(Uniform(rng, x.Length));
        var (_, mean, rstd) = Reference.LayerNorm(x, w, b, rows, cols, LayerNormEpsilon);
        var (dx, dw, db) = Reference.LayerNormBackward(dOut, x, w, mean, rstd, rows, cols);
        double Loss(double[] xs, double[] ws, double[] bs) => Expect.Dot(dOut, Reference.LayerNorm(xs, ws, bs, rows, cols, LayerNormEpsilon).Output);
        Expect.Close(dx, Expect.FiniteDifferences(v => Loss(v, w, b), x), 1e-6, 1e-8, "LayerNorm dInput against finite differences");
        Expect.Close(dw, Expect.FiniteDifferences(v => Loss(x, v, b), w), 1e-6, 1e-8, "LayerNorm dWeight against finite differences");
        Expect.Close(db, Expect.FiniteDifferences(v => Loss(x, w, v), b), 1e-6, 1e-8, "LayerNorm dBias against finite differences");
    }
}

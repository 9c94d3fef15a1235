using Xunit;

namespace LoraRuntime.Tests.Primitives;

// Softmax forward and backward over many (rows, cols) shapes, causal and not, against float64.
public abstract partial class PrimitiveConformance
{
    /// <summary>
    /// Shapes (batch, T, cols): cols 1..67 with T = cols, about cols/2 and 1 (decoding), odd and wide rows, and a
    /// size above the parallel threshold. Non-causal runs read the same shapes as batch·T rows.
    /// </summary>
    private static IEnumerable<(int Batch, int Queries, int Cols, bool Causal)> SoftmaxCases()
    {
        var shapes = new List<(int Batch, int Queries, int Cols)>();
        for (int cols = 1; cols <= 67; cols++)
            foreach (int t in new[] { cols, (cols + 1) / 2, 1 }.Distinct())
                shapes.Add((2, t, cols));
        foreach (int cols in new[] { 127, 128, 129, 255, 256, 257, 1000 }) shapes.Add((1, 5, cols));
        shapes.Add((3, 100, 257));
        return shapes.SelectMany(s => new[] { (s.Batch, s.Queries, s.Cols, false), (s.Batch, s.Queries, s.Cols, true) });
    }

    [Fact]
    public void SoftmaxForward_matches_float64_on_every_shape()
    {
        var rng = new Random(10);
        foreach (var (batch, queries, cols, causal) in SoftmaxCases())
        {
            int rows = batch * queries;
            float[] x = Uniform(rng, rows * cols, -5, 5);
            var output = Upload(Enumerable.Repeat(123f, x.Length).ToArray(), batch, queries, cols);
            Backend.SoftmaxForward(output, Upload(x, batch, queries, cols), causal);
            var expected = Reference.Softmax(Expect.Widen(x), rows, cols, queries, causal);
            // exp(x − max) carries ~|x − max|·2⁻²⁴ relative error (|x − max| ≤ 10 here); masked zeros are exact.
            Expect.Close(output.ToArray(), expected, 2e-6, 0, $"SoftmaxForward [{batch}, {queries}, {cols}], causal {causal}");
        }
    }

    [Fact]
    public void SoftmaxBackward_accumulates_the_float64_gradient_on_every_shape()
    {
        var rng = new Random(11);
        foreach (var (batch, queries, cols, causal) in SoftmaxCases())
        {
            int rows = batch * queries;
            var p = Reference.Softmax(Expect.Widen(Uniform(rng, rows * cols, -5, 5)), rows, cols, queries, causal).Select(v => (float)v).ToArray();
            float[] dOut = Uniform(rng, p.Length), before = Uniform(rng, p.Length);
            var dInput = Upload(before, batch, queries, cols);
            Backend.SoftmaxBackward(dInput, Upload(p, batch, queries, cols), Upload(dOut, batch, queries, cols), causal);
            var gradient = Reference.SoftmaxBackward(Expect.Widen(p), Expect.Widen(dOut), rows, cols, queries, causal);
            var expected = gradient.Select((g, i) => before[i] + g).ToArray();
            Expect.Close(dInput.ToArray(), expected, 1e-6, 2e-7, $"SoftmaxBackward [{batch}, {queries}, {cols}], causal {causal}");
        }
    }

    [Theory]
    [InlineData(2, 3, 5, true)]
    [InlineData(1, 4, 4, true)]
    [InlineData(1, 1, 6, true)]
    [InlineData(2, 1, 7, false)]
    public void Softmax_reference_gradient_matches_finite_differences(int batch, int queries, int cols, bool causal)
    {
        var rng = new Random(12);
        int rows = batch * queries;
        var x = Expect.Widen(Uniform(rng, rows * cols, -3, 3));
        var dOut = Expect.Widen(Uniform(rng, x.Length));
        var p = Reference.Softmax(x, rows, cols, queries, causal);
        var fd = Expect.FiniteDifferences(v => Expect.Dot(dOut, Reference.Softmax(v, rows, cols, queries, causal)), x);
        Expect.Close(Reference.SoftmaxBackward(p, dOut, rows, cols, queries, causal), fd, 1e-6, 1e-9, "softmax gradient against finite differences");
    }

    [Fact]
    public void Softmax_is_stable_for_large_inputs_and_in_place()
    {
        float[] x = [1000f, 1001f, 1002f, -1000f, 88f, 89f, 90f, 91f];
        var t = Upload(x, 2, 4);
        Backend.SoftmaxForward(t, t, causal: false);
        var expected = Reference.Softmax(Expect.Widen(x), 2, 4, 1, false);
        Expect.Close(t.ToArray(), expected, 2e-6, 0, "softmax of large inputs, in place");
    }
}

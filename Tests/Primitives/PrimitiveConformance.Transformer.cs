using Xunit;

namespace LoraRuntime.Tests.Primitives;

// The Llama-family operations against float64 written from their definitions: RMS norm forward and backward over rows
// of C = 1..67 and wider, the gated SiLU of the MLP over every width 1..40, and rotary embeddings (full and partial,
// both directions, positions in any order).
public abstract partial class PrimitiveConformance
{
    private const float RmsEpsilon = 1e-6f;

    /// <summary>(rows, C): C 1..67 over 3 rows, wide odd rows, and a size above the parallel threshold.</summary>
    private static IEnumerable<(int Rows, int Cols)> RmsShapes() =>
        Enumerable.Range(1, 67).Select(c => (3, c)).Concat([(2, 576), (2, 1001), (333, 211)]);

    [Fact]
    public void RmsNorm_forward_and_backward_match_float64_on_every_shape()
    {
        var rng = new Random(40);
        foreach (var (rows, cols) in RmsShapes())
        {
            float[] x = Uniform(rng, rows * cols, -3, 3), w = Uniform(rng, cols, 0.5f, 1.5f), dy = Uniform(rng, rows * cols);
            float[] dxBefore = Uniform(rng, rows * cols), dwBefore = Uniform(rng, cols);
            var output = Upload(new float[x.Length], rows, cols);
            var rstd = Upload(new float[rows], rows);
            var input = Upload(x, rows, cols);
            var weight = Upload(w, cols);
            Backend.RmsNormForward(output, rstd, input, weight, RmsEpsilon);
            double[] expected = new double[x.Length], expectedRstd = new double[rows], dx = new double[x.Length], dw = dwBefore.Select(v => (double)v).ToArray();
            for (int r = 0; r < rows; r++)
            {
                double squares = 0;
                for (int c = 0; c < cols; c++) squares += (double)x[r * cols + c] * x[r * cols + c];
                double s = 1 / Math.Sqrt(squares / cols + RmsEpsilon), gn = 0;
                expectedRstd[r] = s;
                for (int c = 0; c < cols; c++)
                {
                    int i = r * cols + c;
                    expected[i] = x[i] * s * w[c];
                    gn += (double)w[c] * dy[i] * x[i] * s;
                    dw[c] += x[i] * s * dy[i];
                }
                // y = n ⊙ w with n = x·s: dx = s·(w⊙dy − n·mean(w⊙dy⊙n)).
                for (int c = 0; c < cols; c++)
                {
                    int i = r * cols + c;
                    dx[i] = dxBefore[i] + s * ((double)w[c] * dy[i] - x[i] * s * gn / cols);
                }
            }
            string what = $"[{rows}, {cols}]";
            Expect.Close(rstd.ToArray(), expectedRstd, 2e-6, 0, $"RmsNorm rstd {what}");
            Expect.Close(output.ToArray(), expected, 1e-6, 1e-6, $"RmsNorm output {what}");
            var dInput = Upload(dxBefore, rows, cols);
            var dWeight = Upload(dwBefore, cols);
            Backend.RmsNormBackward(dInput, dWeight, Upload(dy, rows, cols), input, weight, rstd);
            Expect.Close(dInput.ToArray(), dx, 1e-5, 1e-5, $"RmsNorm dInput {what}");
            Expect.Close(dWeight.ToArray(), dw, 1e-5, 1e-5 * Math.Sqrt(rows), $"RmsNorm dWeight {what}");
        }
    }

    [Theory]
    [InlineData(3, 5, 0, 2, 8)]
    [InlineData(7, 6, 4, 2, 16)]
    [InlineData(40, 10, 1, 3, 64)]
    [InlineData(2, 3, 0, 3, 5)]
    public void HeadRmsNorm_forward_and_backward_match_float64_in_place(int rows, int rowHeads, int first, int heads, int headSize)
    {
        var rng = new Random(rows * 100 + first * 10 + headSize);
        int width = rowHeads * headSize + 1, items = rows * heads;
        float[] x = Uniform(rng, rows * width, -3, 3), w = Uniform(rng, headSize, 0.5f, 1.5f), dy = Uniform(rng, rows * width), dwBefore = Uniform(rng, headSize);
        var data = Upload(x, rows, width);
        var rstd = Upload(new float[items], items);
        var weight = Upload(w, headSize);
        Backend.HeadRmsNormForward(data, rstd, first, heads, headSize, weight, RmsEpsilon);
        var expected = x.Select(v => (double)v).ToArray();
        var dx = dy.Select(v => (double)v).ToArray();
        var dw = dwBefore.Select(v => (double)v).ToArray();
        for (int r = 0; r < rows; r++)
            for (int h = 0; h < heads; h++)
            {
                int at = r * width + (first + h) * headSize;
                double squares = 0, gn = 0;
                for (int i = 0; i < headSize; i++) squares += (double)x[at + i] * x[at + i];
                double s = 1 / Math.Sqrt(squares / headSize + RmsEpsilon);
                for (int i = 0; i < headSize; i++)
                {
                    expected[at + i] = x[at + i] * s * w[i];
                    gn += (double)w[i] * dy[at + i] * x[at + i] * s;
                    dw[i] += x[at + i] * s * dy[at + i];
                }
                for (int i = 0; i < headSize; i++) dx[at + i] = s * ((double)w[i] * dy[at + i] - x[at + i] * s * gn / headSize);
            }
        string what = $"[{rows}, {width}] heads [{first}, {first + heads}) of {headSize}";
        Expect.Close(data.ToArray(), expected, 1e-6, 1e-6, "HeadRmsNorm " + what); // other columns untouched
        var dRows = Upload(dy, rows, width);
        var dWeight = Upload(dwBefore, headSize);
        Backend.HeadRmsNormBackward(dRows, dWeight, Upload(x, rows, width), weight, rstd, first, heads, headSize);
        Expect.Close(dRows.ToArray(), dx, 1e-5, 1e-5, "HeadRmsNorm dRows " + what);
        Expect.Close(dWeight.ToArray(), dw, 1e-5, 1e-5 * Math.Sqrt(items), "HeadRmsNorm dWeight " + what);
        string Message(Action call) => Assert.ThrowsAny<ArgumentException>(call).Message;
        Assert.Contains("heads", Message(() => Backend.HeadRmsNormForward(data, rstd, rowHeads, 1, headSize, weight, RmsEpsilon)));
        Assert.Contains("rstd", Message(() => Backend.HeadRmsNormForward(data, Upload(new float[items + 1], items + 1), first, heads, headSize, weight, RmsEpsilon)));
    }

    [Fact]
    public void GatedSilu_forward_and_backward_match_float64_on_every_width()
    {
        var rng = new Random(41);
        foreach (int width in Enumerable.Range(1, 40).Append(896).Append(1536))
        {
            int rows = width > 40 ? 37 : 3;
            // Gates from deep in the negative tail (σ ≈ 0) to the positive one, and the clamp's neighbourhood.
            float[] input = Uniform(rng, rows * 2 * width, -12, 12), dy = Uniform(rng, rows * width);
            input[0] = -100f;
            input[Math.Min(1, width - 1)] = 95f;
            var output = Upload(new float[rows * width], rows, width);
            var x = Upload(input, rows, 2 * width);
            Backend.GatedSiluForward(output, x);
            double[] expected = new double[rows * width], dInput = new double[input.Length];
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < width; c++)
                {
                    double g = input[2 * r * width + c], u = input[(2 * r + 1) * width + c], s = 1 / (1 + Math.Exp(-g)), d = dy[r * width + c];
                    expected[r * width + c] = g * s * u;
                    dInput[2 * r * width + c] = d * u * s * (1 + g * (1 - s));
                    dInput[(2 * r + 1) * width + c] = d * g * s;
                }
            Expect.Close(output.ToArray(), expected, 1e-5, 1e-6, $"GatedSilu output [{rows}, {width}]");
            var dx = Upload(Enumerable.Repeat(7f, input.Length).ToArray(), rows, 2 * width); // stored, not accumulated
            Backend.GatedSiluBackward(dx, x, Upload(dy, rows, width));
            Expect.Close(dx.ToArray(), dInput, 1e-5, 1e-6, $"GatedSilu dInput [{rows}, {width}]");
        }
    }

    /// <summary>(rows, heads rotated, heads in a row, head size, rotated half H, table length).</summary>
    public static TheoryData<int, int, int, int, int, int> RotaryCases => new()
    {
        { 5, 2, 3, 8, 4, 16 }, { 7, 6, 8, 64, 32, 40 }, { 3, 3, 3, 12, 3, 5 }, { 9, 4, 6, 32, 8, 12 }, { 1, 1, 1, 2, 1, 1 }, { 40, 12, 14, 128, 64, 64 },
    };

    [Theory]
    [MemberData(nameof(RotaryCases))]
    public void Rotary_matches_float64_and_its_inverse_undoes_it(int rows, int heads, int rowHeads, int headSize, int half, int positions)
    {
        var rng = new Random(rows * 100 + headSize + half);
        int width = rowHeads * headSize + 3;
        float[] x = Uniform(rng, rows * width, -2, 2), cos = Uniform(rng, positions * half), sin = Uniform(rng, positions * half);
        int[] pos = Enumerable.Range(0, rows).Select(_ => rng.Next(positions)).ToArray();
        var data = Upload(x, rows, width);
        var ids = UploadIds(pos, rows);
        Tensor c = Upload(cos, positions, half), s = Upload(sin, positions, half);
        Backend.Rotary(data, ids, heads, headSize, c, s, inverse: false);
        var expected = x.Select(v => (double)v).ToArray();
        for (int r = 0; r < rows; r++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < half; i++)
                {
                    int a = r * width + h * headSize + i, b = a + half, t = pos[r] * half + i;
                    // rotate_half: x·cos + (−x₂, x₁)·sin.
                    expected[a] = (double)x[a] * cos[t] - (double)x[b] * sin[t];
                    expected[b] = (double)x[b] * cos[t] + (double)x[a] * sin[t];
                }
        Expect.Close(data.ToArray(), expected, 1e-6, 1e-6, $"Rotary [{rows}, {width}], {heads} heads of {headSize}, H {half}");
        // With a true rotation (cos² + sin² = 1) the inverse gives back the input.
        for (int i = 0; i < cos.Length; i++) (cos[i], sin[i]) = (MathF.Cos(3 * cos[i]), MathF.Sin(3 * cos[i]));
        var round = Upload(x, rows, width);
        Tensor rc = Upload(cos, positions, half), rs = Upload(sin, positions, half);
        Backend.Rotary(round, ids, heads, headSize, rc, rs, inverse: false);
        Backend.Rotary(round, ids, heads, headSize, rc, rs, inverse: true);
        Expect.Close(round.ToArray(), x.Select(v => (double)v).ToArray(), 1e-6, 1e-6, "Rotary then its inverse");
    }

    [Fact]
    public void Transformer_operations_refuse_bad_shapes_and_positions_by_name()
    {
        string Message(Action call) => Assert.ThrowsAny<ArgumentException>(call).Message;
        var x = Upload(new float[24], 4, 6);
        Assert.Contains("rstd", Message(() => Backend.RmsNormForward(Upload(new float[24], 4, 6), Upload(new float[3], 3), x, Upload(new float[6], 6), 1e-6f)));
        Assert.Contains("weight", Message(() => Backend.RmsNormForward(Upload(new float[24], 4, 6), Upload(new float[4], 4), x, Upload(new float[5], 5), 1e-6f)));
        Assert.Contains("epsilon", Message(() => Backend.RmsNormForward(Upload(new float[24], 4, 6), Upload(new float[4], 4), x, Upload(new float[6], 6), -1f)));
        Assert.Contains("output", Message(() => Backend.GatedSiluForward(Upload(new float[16], 4, 4), x)));
        Assert.Contains("output", Message(() => Backend.GatedSiluForward(Upload(new float[12], 4, 3), Upload(new float[20], 4, 5))));
        Assert.Contains("dOutput", Message(() => Backend.GatedSiluBackward(Upload(new float[24], 4, 6), x, Upload(new float[8], 4, 2))));
        var ids = UploadIds([0, 1, 2, 3], 4);
        Tensor cos = Upload(new float[8], 4, 2), sin = Upload(new float[8], 4, 2);
        Assert.Contains("heads", Message(() => Backend.Rotary(x, ids, 2, 4, cos, sin, false)));
        Assert.Contains("cos", Message(() => Backend.Rotary(x, ids, 1, 3, cos, sin, false)));
        Assert.Contains("sin", Message(() => Backend.Rotary(x, ids, 1, 4, cos, Upload(new float[6], 3, 2), false)));
        Assert.Contains("positions", Message(() => Backend.Rotary(x, UploadIds([0, 1, 4, 2], 4), 1, 4, cos, sin, false)));
        Assert.Contains("positions", Message(() => Backend.Rotary(x, UploadIds([0, 1, 2], 3), 1, 4, cos, sin, false)));
    }
}

using Xunit;

namespace LoraRuntime.Tests.Primitives;

// The layer operations (bias, row and column scalings, column sums, row norms, division, head permutations,
// dropout, the finiteness scan) against float64, over every column tail and a parallel size.
public abstract partial class PrimitiveConformance
{
    /// <summary>(rows, cols): cols 1..40 over 3 rows, wide rows, and sizes above the parallel threshold.</summary>
    private static IEnumerable<(int Rows, int Cols)> BroadcastShapes() =>
        Enumerable.Range(1, 40).Select(c => (3, c)).Concat([(1, 257), (2, 1001), (700, 301), (301, 700)]);

    [Fact]
    public void Row_and_column_broadcasts_match_float64()
    {
        var rng = new Random(70);
        foreach (var (rows, cols) in BroadcastShapes())
        {
            float[] x = Uniform(rng, rows * cols), perColumn = Uniform(rng, cols), perRow = Uniform(rng, rows);
            Tensor input = Upload(x, rows, cols), output = Upload(new float[x.Length], rows, cols);
            string what = $"[{rows}, {cols}]";
            Backend.AddBias(output, input, Upload(perColumn, cols));
            Expect.Close(output.ToArray(), x.Select((v, i) => (double)v + perColumn[i % cols]).ToArray(), 6e-8, 0, $"AddBias {what}");
            Backend.ScaleColumns(output, input, Upload(perColumn, cols));
            Expect.Close(output.ToArray(), x.Select((v, i) => (double)v * perColumn[i % cols]).ToArray(), 6e-8, 0, $"ScaleColumns {what}");
            Backend.ScaleRows(output, input, Upload(perRow, rows));
            Expect.Close(output.ToArray(), x.Select((v, i) => (double)v * perRow[i / cols]).ToArray(), 6e-8, 0, $"ScaleRows {what}");
            Backend.ScaleRows(input, input, Upload(perRow, rows)); // in place
            Expect.Close(input.ToArray(), x.Select((v, i) => (double)v * perRow[i / cols]).ToArray(), 6e-8, 0, $"ScaleRows in place {what}");
        }
    }

    [Fact]
    public void Column_sums_accumulate_the_float64_sums()
    {
        var rng = new Random(71);
        foreach (var (rows, cols) in BroadcastShapes())
        {
            float[] a = Uniform(rng, rows * cols), b = Uniform(rng, rows * cols), before = Uniform(rng, cols);
            var sums = new double[cols];
            var dots = new double[cols];
            for (int i = 0; i < a.Length; i++)
            {
                sums[i % cols] += a[i];
                dots[i % cols] += (double)a[i] * b[i];
            }
            Tensor dBias = Upload(before, cols), dots32 = Upload(before, cols);
            Backend.BiasBackward(dBias, Upload(a, rows, cols));
            Backend.ColumnDot(dots32, Upload(a, rows, cols), Upload(b, rows, cols));
            // Each column adds `rows` terms below 1 in float: partial sums reach √rows and each addition rounds.
            double atol = 1e-7 * rows;
            Expect.Close(dBias.ToArray(), sums.Select((s, j) => before[j] + s).ToArray(), 1e-6, atol, $"BiasBackward [{rows}, {cols}]");
            Expect.Close(dots32.ToArray(), dots.Select((s, j) => before[j] + s).ToArray(), 1e-6, atol, $"ColumnDot [{rows}, {cols}]");
        }
    }

    [Fact]
    public void Bias_and_column_scale_gradients_match_finite_differences()
    {
        // BiasBackward is the gradient of Σ w ⊙ AddBias(x, b) in b; ColumnDot(w, x) that of Σ w ⊙ ScaleColumns(x, s) in s.
        var rng = new Random(72);
        const int rows = 5, cols = 7;
        double[] x = Expect.Widen(Uniform(rng, rows * cols)), w = Expect.Widen(Uniform(rng, rows * cols));
        double AddBiasLoss(double[] b) => Enumerable.Range(0, x.Length).Sum(i => w[i] * (x[i] + b[i % cols]));
        double ScaleLoss(double[] s) => Enumerable.Range(0, x.Length).Sum(i => w[i] * x[i] * s[i % cols]);
        double[] at = Expect.Widen(Uniform(rng, cols));
        Tensor wt = Upload(w.Select(v => (float)v).ToArray(), rows, cols), xt = Upload(x.Select(v => (float)v).ToArray(), rows, cols);
        Tensor dBias = Upload(new float[cols], cols), dScale = Upload(new float[cols], cols);
        Backend.BiasBackward(dBias, wt);
        Backend.ColumnDot(dScale, wt, xt);
        Expect.Close(dBias.ToArray(), Expect.FiniteDifferences(AddBiasLoss, at), 1e-5, 1e-6, "BiasBackward against finite differences");
        Expect.Close(dScale.ToArray(), Expect.FiniteDifferences(ScaleLoss, at), 1e-5, 1e-6, "ColumnDot against finite differences");
    }

    [Fact]
    public void RowNorms_and_Divide_match_float64()
    {
        var rng = new Random(73);
        foreach (var (rows, cols) in BroadcastShapes())
        {
            float[] x = Uniform(rng, rows * cols);
            var norms = Upload(new float[rows], rows);
            Backend.RowNorms(norms, Upload(x, rows, cols));
            var expected = Enumerable.Range(0, rows).Select(r => Math.Sqrt(x.Skip(r * cols).Take(cols).Sum(v => (double)v * v))).ToArray();
            Expect.Close(norms.ToArray(), expected, 2e-6, 0, $"RowNorms [{rows}, {cols}]");
        }
        foreach (int n in Lengths())
        {
            float[] a = Uniform(rng, n), b = Uniform(rng, n, 0.5f, 2f);
            var output = Upload(new float[n], n);
            Backend.Divide(output, Upload(a, n), Upload(b, n));
            Expect.Close(output.ToArray(), a.Select((v, i) => (double)v / b[i]).ToArray(), 6e-8, 0, $"Divide, n = {n}");
        }
    }

    [Theory]
    [InlineData(2, 3, 5, 4, 0, 12)]
    [InlineData(2, 3, 5, 4, 12, 36)] // k of a fused [B, T, 3C]
    [InlineData(1, 1, 7, 3, 2, 9)]
    [InlineData(3, 12, 64, 64, 768, 2304)] // GPT-2 small's v, above the parallel threshold
    public void SplitHeads_and_MergeHeads_permute_exactly(int batch, int heads, int time, int headSize, int column, int width)
    {
        var rng = new Random(74);
        float[] rows = Uniform(rng, batch * time * width);
        var rowsT = Upload(rows, batch, time, width);
        var headsT = Upload(new float[batch * heads * time * headSize], batch, heads, time, headSize);
        Backend.SplitHeads(headsT, rowsT, column);
        var split = headsT.ToArray();
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int t = 0; t < time; t++)
                    for (int d = 0; d < headSize; d++)
                        Assert.Equal(rows[(b * time + t) * width + column + h * headSize + d], split[((b * heads + h) * time + t) * headSize + d]);
        // Merging different values back writes exactly the split columns and leaves the others alone.
        float[] other = Uniform(rng, split.Length);
        Backend.Upload(headsT, other);
        Backend.MergeHeads(rowsT, headsT, column);
        var merged = rowsT.ToArray();
        for (int i = 0; i < merged.Length; i++)
        {
            int n = i / width, c = i % width - column;
            bool inside = c >= 0 && c < heads * headSize;
            float expected = inside ? other[((n / time * heads + c / headSize) * time + n % time) * headSize + c % headSize] : rows[i];
            Assert.Equal(expected, merged[i]);
        }
    }

    [Fact]
    public void Dropout_masks_are_the_documented_hash_at_every_length()
    {
        var rng = new Random(75);
        foreach (float p in new[] { 0f, 0.1f, 0.5f, 0.9f })
            foreach (int n in Lengths())
            {
                ulong seed = (ulong)rng.NextInt64();
                float[] x = Uniform(rng, n), dy = Uniform(rng, n), before = Uniform(rng, n);
                Tensor output = Upload(new float[n], n), dx = Upload(before, n);
                Backend.DropoutForward(output, Upload(x, n), p, seed);
                Backend.DropoutBackward(dx, Upload(dy, n), p, seed);
                uint threshold = Backend.DropoutThreshold(p);
                float scale = 1 / (1 - p);
                var y = output.ToArray();
                var g = dx.ToArray();
                for (int i = 0; i < n; i++)
                {
                    bool keep = Backend.DropoutBits(seed, (ulong)i) >> 8 >= threshold;
                    Assert.Equal(keep ? x[i] * scale : 0f, y[i]);
                    Assert.Equal(before[i] + (keep ? dy[i] * scale : 0f), g[i]);
                }
            }
    }

    [Theory]
    [InlineData(0.1f)]
    [InlineData(0.5f)]
    public void Dropout_keeps_the_expected_fraction_and_differs_by_seed(float p)
    {
        const int n = ParallelLength;
        var ones = Upload(Enumerable.Repeat(1f, n).ToArray(), n);
        Tensor first = Upload(new float[n], n), again = Upload(new float[n], n), other = Upload(new float[n], n);
        Backend.DropoutForward(first, ones, p, 42);
        Backend.DropoutForward(again, ones, p, 42);
        Backend.DropoutForward(other, ones, p, 43);
        float[] a = first.ToArray(), b = other.ToArray();
        Assert.Equal(a, again.ToArray());
        double kept = a.Count(v => v != 0) / (double)n;
        // Binomial: 5 standard deviations of the kept fraction.
        Assert.InRange(kept, 1 - p - 5 * Math.Sqrt(p * (1 - p) / n), 1 - p + 5 * Math.Sqrt(p * (1 - p) / n));
        double agree = Enumerable.Range(0, n).Count(i => (a[i] != 0) == (b[i] != 0)) / (double)n;
        double expectedAgree = p * p + (1 - p) * (1 - p);
        Assert.InRange(agree, expectedAgree - 0.01, expectedAgree + 0.01);
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(1_000L)]
    [InlineData((1L << 32) - 37)] // the slice crosses a 2³² boundary of the index
    public void Dropout_of_a_slice_at_its_first_index_is_that_slice_of_the_whole_mask(long origin)
    {
        // A data-parallel rank's rows of a batch draw the whole batch's mask: element i of the slice is element first + i.
        const int n = ParallelLength, first = 777, rows = n - 2 * first;
        var x = Enumerable.Range(0, n).Select(i => 1f + i % 13).ToArray();
        Tensor whole = Upload(new float[n], n), part = Upload(new float[rows], rows), dPart = Upload(Enumerable.Repeat(0.5f, rows).ToArray(), rows);
        Backend.DropoutForward(whole, Upload(x, n), 0.3f, 99, (ulong)origin);
        var slice = Upload(x[first..(first + rows)], rows);
        Backend.DropoutForward(part, slice, 0.3f, 99, (ulong)(origin + first));
        Backend.DropoutBackward(dPart, slice, 0.3f, 99, (ulong)(origin + first));
        float[] expected = whole.ToArray()[first..(first + rows)];
        Assert.Equal(expected, part.ToArray());
        Assert.Equal(expected.Select(v => 0.5f + v).ToArray(), dPart.ToArray());
        // The index decides the mask, not where the tensor starts: at another first index the mask differs.
        Backend.DropoutForward(part, slice, 0.3f, 99, (ulong)(origin + first + 1));
        Assert.NotEqual(expected, part.ToArray());
    }

    [Fact]
    public void FindNonFinite_reports_the_first_NaN_or_infinity()
    {
        foreach (int n in new[] { 1, 17, 70_000, ParallelLength })
        {
            float[] x = Uniform(new Random(n), n);
            Assert.Equal(-1, Backend.FindNonFinite(Upload(x, n)));
            foreach (float bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity })
                foreach (int at in new[] { 0, n / 2, n - 1 })
                {
                    var copy = (float[])x.Clone();
                    copy[at] = bad;
                    if (at + 1 < n) copy[n - 1] = float.NaN;
                    Assert.Equal(at, Backend.FindNonFinite(Upload(copy, n)));
                }
        }
    }

    [Fact]
    public void Layer_ops_reject_bad_arguments()
    {
        Tensor x = Filled(3, 4), output = Filled(3, 4), bias = Filled(4), perRow = Filled(3);
        Rejects("bias", () => Backend.AddBias(output, x, Filled(3)), output);
        Rejects("output", () => Backend.AddBias(Filled(4, 3), x, bias));
        Rejects("output", () => Backend.AddBias(bias.View(0, new Shape(1, 4)), bias.View(0, new Shape(1, 4)), bias), bias);
        Rejects("scale", () => Backend.ScaleColumns(output, x, perRow), output);
        Rejects("scale", () => Backend.ScaleRows(output, x, bias), output);
        Rejects("input", () => Backend.ScaleRows(output, Foreign(3, 4), perRow), output);
        Rejects("dBias", () => Backend.BiasBackward(Filled(3), x));
        Rejects("dBias", () => Backend.BiasBackward(x.View(0, new Shape(4)), x), x);
        Rejects("b", () => Backend.ColumnDot(bias, x, Filled(4, 3)), bias);
        Rejects("output", () => Backend.ColumnDot(Filled(3), x, x));
        Rejects("output", () => Backend.RowNorms(Filled(4), x));
        Rejects("b", () => Backend.Divide(bias, Filled(4), Filled(5)), bias);
        RejectsDisposed("a", () => Backend.Divide(bias, Disposed(4), Filled(4)), bias);

        Tensor rows = Filled(2, 3, 12), heads = Filled(2, 2, 3, 2);
        Rejects("heads", () => Backend.SplitHeads(Filled(2, 6, 2), rows, 0));
        Rejects("rows", () => Backend.SplitHeads(heads, Filled(2, 4, 12), 0), heads);
        Rejects("column", () => Backend.SplitHeads(heads, rows, 9), heads);
        Rejects("column", () => Backend.MergeHeads(rows, heads, -1), rows);
        Rejects("rows", () => Backend.MergeHeads(Foreign(2, 3, 12), heads, 0));

        Rejects("probability", () => Backend.DropoutForward(output, x, 1f, 1), output);
        Rejects("probability", () => Backend.DropoutForward(output, x, -0.1f, 1), output);
        Rejects("probability", () => Backend.DropoutBackward(output, x, float.NaN, 1), output);
        Rejects("dInput", () => Backend.DropoutBackward(x, x, 0.1f, 1), x);
        Rejects("dOutput", () => Backend.DropoutBackward(output, Filled(5), 0.1f, 1), output);
        RejectsDisposed("input", () => Backend.FindNonFinite(Disposed(3)));
    }

    [Fact]
    public void Layer_ops_allocate_nothing_once_warm()
    {
        var rng = new Random(76);
        const int rows = 300, cols = 400;
        Tensor NewMatrix() => Upload(Uniform(rng, rows * cols), rows, cols);
        Tensor x = NewMatrix(), y = NewMatrix(), z = NewMatrix(), colVector = Upload(Uniform(rng, cols), cols), rowVector = Upload(Uniform(rng, rows), rows);
        Tensor fused = Upload(Uniform(rng, 2 * 50 * 3 * 64), 2, 50, 3 * 64), heads = Upload(new float[2 * 4 * 50 * 16], 2, 4, 50, 16);
        var ops = new (string Name, Action Call)[]
        {
            ("AddBias", () => Backend.AddBias(y, x, colVector)),
            ("BiasBackward", () => Backend.BiasBackward(colVector, x)),
            ("ColumnDot", () => Backend.ColumnDot(colVector, x, z)),
            ("ScaleColumns", () => Backend.ScaleColumns(y, x, colVector)),
            ("ScaleRows", () => Backend.ScaleRows(y, x, rowVector)),
            ("RowNorms", () => Backend.RowNorms(rowVector, x)),
            ("Divide", () => Backend.Divide(y, x, z)),
            ("SplitHeads", () => Backend.SplitHeads(heads, fused, 64)),
            ("MergeHeads", () => Backend.MergeHeads(fused, heads, 128)),
            ("DropoutForward", () => Backend.DropoutForward(y, x, 0.1f, 7)),
            ("DropoutBackward", () => Backend.DropoutBackward(y, x, 0.1f, 7)),
            ("FindNonFinite", () => Backend.FindNonFinite(x)),
        };
        AssertAllocateNothing(ops);
    }
}

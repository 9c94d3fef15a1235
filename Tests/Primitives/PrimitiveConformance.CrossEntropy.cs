using Xunit;

namespace LoraRuntime.Tests.Primitives;

// Cross-entropy forward and backward over V = 1..67, wider vocabularies and a parallel size, with ignored rows.
public abstract partial class PrimitiveConformance
{
    /// <summary>(rows, V) pairs: V 1..67 over 5 rows, wider vocabularies, and a size above the parallel threshold.</summary>
    private static List<(int Rows, int Classes)> CrossEntropyShapes()
    {
        var shapes = new List<(int, int)>();
        for (int classes = 1; classes <= 67; classes++) shapes.Add((5, classes));
        foreach (int classes in new[] { 128, 257, 1000 }) shapes.Add((3, classes));
        shapes.Add((129, 1001));
        return shapes;
    }

    /// <summary>Targets in [0, V) with every fifth row ignored (a negative target).</summary>
    private static int[] Targets(Random rng, int rows, int classes) =>
        Enumerable.Range(0, rows).Select(r => r % 5 == 3 ? -1 - r : rng.Next(classes)).ToArray();

    [Fact]
    public void CrossEntropyForward_matches_float64_on_every_shape()
    {
        var rng = new Random(30);
        foreach (var (rows, classes) in CrossEntropyShapes())
        {
            float[] logits = Uniform(rng, rows * classes, -4, 4);
            int[] targets = Targets(rng, rows, classes);
            var losses = Upload(Enumerable.Repeat(7f, rows).ToArray(), rows);
            var probs = Upload(new float[logits.Length], rows, classes);
            Backend.CrossEntropyForward(losses, probs, Upload(logits, rows, classes), UploadIds(targets, rows));
            var expected = Reference.CrossEntropy(Expect.Widen(logits), targets, rows, classes);
            string what = $"[{rows}, {classes}]";
            Expect.Close(probs.ToArray(), expected.Probs, 2e-6, 0, $"CrossEntropy probs {what}");
            // A loss is log-sum-exp − logit: its error is absolute, ulps of the logits' magnitude (≤ 4 here).
            Expect.Close(losses.ToArray(), expected.Losses, 1e-6, 1e-6, $"CrossEntropy losses {what}");
        }
    }

    [Fact]
    public void CrossEntropy_loss_stays_finite_when_the_target_probability_underflows()
    {
        var losses = Upload(new float[2], 2);
        var probs = Upload(new float[6], 2, 3);
        Backend.CrossEntropyForward(losses, probs, Upload([0f, 200f, -200f, 50f, 50f, 50f], 2, 3), UploadIds([2, 1], 2));
        Expect.Close(losses.ToArray(), [400, Math.Log(3)], 1e-6, 0, "losses of extreme logits");
    }

    [Fact]
    public void CrossEntropyBackward_accumulates_the_float64_gradient_on_every_shape()
    {
        var rng = new Random(31);
        foreach (var (rows, classes) in CrossEntropyShapes())
        {
            int[] targets = Targets(rng, rows, classes);
            var probs = Reference.Softmax(Expect.Widen(Uniform(rng, rows * classes, -4, 4)), rows, classes, 1, false).Select(v => (float)v).ToArray();
            float[] dLosses = Uniform(rng, rows), before = Uniform(rng, probs.Length);
            var dLogits = Upload(before, rows, classes);
            Backend.CrossEntropyBackward(dLogits, Upload(dLosses, rows), Upload(probs, rows, classes), UploadIds(targets, rows));
            var gradient = Reference.CrossEntropyBackward(Expect.Widen(dLosses), Expect.Widen(probs), targets, rows, classes);
            // Ignored rows must come back bit for bit: their gradient is exactly 0.
            Expect.Close(dLogits.ToArray(), gradient.Select((g, i) => before[i] + g).ToArray(), 1e-6, AccumulateAtol, $"CrossEntropyBackward [{rows}, {classes}]");
        }
    }

    [Theory]
    [InlineData(4, 6)]
    [InlineData(5, 1)]
    [InlineData(5, 13)]
    public void CrossEntropy_reference_gradient_matches_finite_differences(int rows, int classes)
    {
        var rng = new Random(32);
        int[] targets = Targets(rng, rows, classes);
        var logits = Expect.Widen(Uniform(rng, rows * classes, -3, 3));
        var dLosses = Expect.Widen(Uniform(rng, rows));
        var (_, probs) = Reference.CrossEntropy(logits, targets, rows, classes);
        var fd = Expect.FiniteDifferences(v => Expect.Dot(dLosses, Reference.CrossEntropy(v, targets, rows, classes).Losses), logits);
        Expect.Close(Reference.CrossEntropyBackward(dLosses, probs, targets, rows, classes), fd, 1e-6, 1e-9, "cross-entropy gradient against finite differences");
    }
}

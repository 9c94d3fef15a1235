using Xunit;

namespace LoraRuntime.Tests.Primitives;

// Embedding forward (an exact gather) and backward (a scatter-add with repeated ids).
public abstract partial class PrimitiveConformance
{
    /// <summary>(V, C, N) triples: C 1..67 with repeated ids, and a backward size above the parallel threshold.</summary>
    private static List<(int Vocabulary, int Channels, int Count)> EmbeddingShapes()
    {
        var shapes = new List<(int, int, int)>();
        for (int channels = 1; channels <= 67; channels++) shapes.Add((7, channels, 11));
        shapes.Add((50, 1024, 100));
        return shapes;
    }

    [Fact]
    public void EmbeddingForward_gathers_rows_exactly()
    {
        var rng = new Random(40);
        foreach (var (vocabulary, channels, count) in EmbeddingShapes())
        {
            float[] table = Uniform(rng, vocabulary * channels);
            int[] ids = Enumerable.Range(0, count).Select(_ => rng.Next(vocabulary)).ToArray();
            var output = Upload(new float[count * channels], count, channels);
            Backend.EmbeddingForward(output, UploadIds(ids, count), Upload(table, vocabulary, channels));
            Expect.Close(output.ToArray(), Reference.Embedding(ids, Expect.Widen(table), channels), 0, 0, $"EmbeddingForward [{vocabulary}, {channels}]");
        }
    }

    [Fact]
    public void Embedding_reads_ids_of_any_shape()
    {
        float[] table = Uniform(new Random(41), 5 * 3);
        int[] ids = [4, 0, 4, 2, 1, 3];
        var output = Upload(new float[18], 2, 3, 3);
        Backend.EmbeddingForward(output, UploadIds(ids, 2, 3), Upload(table, 5, 3));
        Expect.Close(output.ToArray(), Reference.Embedding(ids, Expect.Widen(table), 3), 0, 0, "EmbeddingForward with ids [2, 3]");
    }

    [Fact]
    public void EmbeddingBackward_accumulates_rows_of_repeated_ids()
    {
        var rng = new Random(42);
        foreach (var (vocabulary, channels, count) in EmbeddingShapes())
        {
            int[] ids = Enumerable.Range(0, count).Select(_ => rng.Next(vocabulary)).ToArray();
            float[] dOut = Uniform(rng, count * channels), before = Uniform(rng, vocabulary * channels);
            var dTable = Upload(before, vocabulary, channels);
            Backend.EmbeddingBackward(dTable, Upload(dOut, count, channels), UploadIds(ids, count));
            var gradient = Reference.EmbeddingBackward(Expect.Widen(dOut), ids, vocabulary, channels);
            // Each row sums its O(1) contributions in float: a few ulps of the sum.
            Expect.Close(dTable.ToArray(), gradient.Select((g, i) => before[i] + g).ToArray(), 1e-6, 1e-6, $"EmbeddingBackward [{vocabulary}, {channels}]");
        }
    }

    [Fact]
    public void Embedding_reference_gradient_matches_finite_differences()
    {
        var rng = new Random(43);
        const int vocabulary = 5, channels = 3;
        int[] ids = [1, 4, 1, 0];
        var table = Expect.Widen(Uniform(rng, vocabulary * channels));
        var dOut = Expect.Widen(Uniform(rng, ids.Length * channels));
        var fd = Expect.FiniteDifferences(t => Expect.Dot(dOut, Reference.Embedding(ids, t, channels)), table);
        Expect.Close(Reference.EmbeddingBackward(dOut, ids, vocabulary, channels), fd, 1e-8, 1e-10, "embedding gradient against finite differences");
    }
}

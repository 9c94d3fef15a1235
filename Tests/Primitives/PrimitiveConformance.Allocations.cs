using Xunit;

namespace LoraRuntime.Tests.Primitives;

// Steady state allocates nothing: validation, dispatch and the parallel hand-off included.
public abstract partial class PrimitiveConformance
{
    [Theory]
    [InlineData(3, 37)]
    [InlineData(250, 301)] // above the parallel threshold (causal softmax needs rows ≤ cols here)
    public void Primitives_allocate_nothing_once_warm(int rows, int cols)
    {
        var rng = new Random(60);
        int n = rows * cols;
        Tensor NewMatrix() => Upload(Uniform(rng, n), rows, cols);
        Tensor NewVector(int length) => Upload(Uniform(rng, length, 0.5f, 1.5f), length);
        Tensor x = NewMatrix(), y = NewMatrix(), dx = NewMatrix(), dy = NewMatrix(), p = NewMatrix();
        Tensor mean = NewVector(rows), rstd = NewVector(rows), losses = NewVector(rows), dLosses = NewVector(rows);
        Tensor w = NewVector(cols), b = NewVector(cols), dw = NewVector(cols), db = NewVector(cols);
        Tensor m = NewMatrix(), v = NewVector(n), table = Upload(Uniform(rng, 50 * cols), 50, cols), dTable = Upload(new float[50 * cols], 50, cols);
        Tensor targets = UploadIds(Enumerable.Range(0, rows).Select(r => r % 4 == 1 ? -1 : rng.Next(cols)).ToArray(), rows);
        Tensor ids = UploadIds(Enumerable.Range(0, rows).Select(_ => rng.Next(50)).ToArray(), rows);
        var ops = new (string Name, Action Call)[]
        {
            ("Add", () => Backend.Add(y, x, dx)),
            ("Add in place", () => Backend.Add(y, y, x)),
            ("Scale", () => Backend.Scale(y, x, 0.5f)),
            ("Axpy", () => Backend.Axpy(y, 1e-3f, x)),
            ("GeluForward", () => Backend.GeluForward(y, x)),
            ("GeluBackward", () => Backend.GeluBackward(dx, x, dy)),
            ("SoftmaxForward", () => Backend.SoftmaxForward(p, x, causal: false)),
            ("SoftmaxForward causal", () => Backend.SoftmaxForward(p, x, causal: true)),
            ("SoftmaxBackward", () => Backend.SoftmaxBackward(dx, p, dy, causal: true)),
            ("LayerNormForward", () => Backend.LayerNormForward(y, mean, rstd, x, w, b, 1e-5f)),
            ("LayerNormBackward", () => Backend.LayerNormBackward(dx, dw, db, dy, x, w, mean, rstd)),
            ("CrossEntropyForward", () => Backend.CrossEntropyForward(losses, p, x, targets)),
            ("CrossEntropyBackward", () => Backend.CrossEntropyBackward(dx, dLosses, p, targets)),
            ("EmbeddingForward", () => Backend.EmbeddingForward(y, ids, table)),
            ("EmbeddingBackward", () => Backend.EmbeddingBackward(dTable, dy, ids)),
            ("AdamWStep", () => Backend.AdamWStep(x, dy, m, v, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 5)),
        };
        AssertAllocateNothing(ops);
    }

    /// <summary>Each warm call allocates nothing (checked over 10 calls after 3 warm-up calls).</summary>
    private static void AssertAllocateNothing((string Name, Action Call)[] ops)
    {
        var allocating = new List<string>();
        foreach (var (name, call) in ops)
        {
            for (int i = 0; i < 3; i++) call();
            // A one-time lazy initialisation outside the primitives (the worker pool's event allocates its lock the
            // first time the caller has to block) may land in the first window; a per-call allocation shows in both.
            long bytes = AllocatedBytes(call, 10);
            if (bytes != 0) bytes = AllocatedBytes(call, 10);
            if (bytes != 0) allocating.Add($"{name}: {bytes} bytes in 10 calls");
        }
        Assert.Empty(allocating);
    }

    private static long AllocatedBytes(Action call, int calls)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < calls; i++) call();
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }
}

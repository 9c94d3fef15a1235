using Xunit;

namespace LoraRuntime.Tests.Primitives;

// Cached attention (queries over their own cached keys and values: a decode step, or a prefill as one query per
// token) against float64, on the fused kernel and on the composed default.
public abstract partial class PrimitiveConformance
{
    /// <summary>
    /// (heads, key/value heads, head size, cache stride padding, lengths of the rows): vector and scalar head sizes,
    /// one and many rows, a row past the stack scratch, grouped- and multi-query attention.
    /// </summary>
    public static TheoryData<int, int, int, int, int[]> DecodeAttentionCases => new()
    {
        { 1, 1, 16, 0, [1] },
        { 3, 3, 32, 5, [1, 2, 65] },
        { 12, 12, 64, 0, [65, 64, 1, 30, 65, 65, 2, 9] },
        { 2, 2, 12, 3, [7, 1, 40] },
        { 4, 4, 8, 0, [300, 17] },
        { 2, 2, 16, 0, [5000, 3] },
        { 3, 3, 6, 1, [5, 2, 1] }, // a head size no vector width divides: the scalar path
        { 4, 2, 16, 0, [3, 1, 20] },
        { 6, 1, 8, 2, [9, 4] },
        { 8, 4, 12, 0, [1, 33] },
    };

    /// <summary>Each case on the fused and on the composed path.</summary>
    public static TheoryData<int, int, int, int, int[], bool> CachedAttentionCases
    {
        get
        {
            var cases = new TheoryData<int, int, int, int, int[], bool>();
            foreach (var row in DecodeAttentionCases)
            {
                var (heads, kvHeads, headSize, pad, lengths) = row.Data;
                cases.Add(heads, kvHeads, headSize, pad, lengths, false);
                cases.Add(heads, kvHeads, headSize, pad, lengths, true);
            }
            return cases;
        }
    }

    [Theory]
    [MemberData(nameof(CachedAttentionCases))]
    public void CachedAttention_matches_float64(int heads, int kvHeads, int headSize, int pad, int[] lengths, bool composed)
    {
        if (composed) UseComposedAttention();
        var rng = new Random(heads * 100 + kvHeads * 1000 + headSize + lengths.Length);
        int width = heads * headSize, stride = kvHeads * headSize + pad, count = lengths.Length, longest = lengths.Max(), group = heads / kvHeads;
        // Each row's keys then values, every position a row of the cache; queries and outputs at padded offsets.
        var rows = new DecodeAttentionRow[count];
        long at = 3;
        for (int r = 0; r < count; r++)
        {
            rows[r] = new DecodeAttentionRow(Query: 2 + (long)r * (width + 1), Output: 1 + (long)r * (width + 2), Keys: at, Values: at + (long)longest * stride, Length: lengths[r]);
            at += 2L * longest * stride;
        }
        float[] q = Uniform(rng, count * (width + 1) + 2, -2, 2), cache = Uniform(rng, at + 4, -2, 2);
        float[] before = Enumerable.Repeat(7f, count * (width + 2) + 1).ToArray();
        float scale = 1 / MathF.Sqrt(headSize);
        var output = Upload(before, before.Length);
        var scores = Upload(new float[heads * longest], heads * longest);
        Backend.CachedAttention(output, Upload(q, q.Length), Upload(cache, cache.Length), stride, rows, heads, kvHeads, headSize, scale, scores);
        var actual = output.ToArray();
        var expected = before.Select(v => (double)v).ToArray();
        foreach (var row in rows)
            for (int h = 0; h < heads; h++)
            {
                var s = new double[row.Length];
                for (int j = 0; j < row.Length; j++)
                {
                    double dot = 0;
                    for (int d = 0; d < headSize; d++) dot += (double)q[row.Query + h * headSize + d] * cache[row.Keys + (long)j * stride + h / group * headSize + d];
                    s[j] = scale * dot;
                }
                double max = s.Max(), sum = s.Sum(v => Math.Exp(v - max));
                for (int d = 0; d < headSize; d++)
                {
                    double y = 0;
                    for (int j = 0; j < row.Length; j++) y += Math.Exp(s[j] - max) / sum * cache[row.Values + (long)j * stride + h / group * headSize + d];
                    expected[row.Output + h * headSize + d] = y;
                }
            }
        Expect.Close(actual, expected, 1e-5, 1e-6, $"CachedAttention NH={heads} KVH={kvHeads} HS={headSize} lengths [{string.Join(", ", lengths)}]{(composed ? " composed" : "")}");

        // A row's result does not depend on the others in the call: each alone gives the same floats.
        for (int r = 0; r < count; r++)
        {
            var alone = Upload(before, before.Length);
            Backend.CachedAttention(alone, Upload(q, q.Length), Upload(cache, cache.Length), stride, rows.AsSpan(r, 1), heads, kvHeads, headSize, scale, scores);
            var single = alone.ToArray();
            for (int i = 0; i < width; i++) Assert.Equal(actual[rows[r].Output + i], single[rows[r].Output + i]);
        }
    }

    [Fact]
    public void CachedAttention_refuses_bad_rows_and_arguments_by_name()
    {
        var scores = Upload(new float[16], 16);
        var output = Upload(new float[64], 64);
        var q = Upload(new float[64], 64);
        var cache = Upload(new float[256], 256);
        DecodeAttentionRow Row(long query = 0, long keys = 0, long values = 128, int length = 4) => new(query, 0, keys, values, length);
        string Message(Action call) => Assert.ThrowsAny<ArgumentException>(call).Message;

        Assert.Contains("rows[0].Length", Message(() => Backend.CachedAttention(output, q, cache, 32, [Row(length: 0)], 2, 2, 16, 1f, scores)));
        Assert.Contains("rows[1].Values", Message(() => Backend.CachedAttention(output, q, cache, 32, [Row(), Row(values: 200)], 2, 2, 16, 1f, scores)));
        Assert.Contains("rows[0].Query", Message(() => Backend.CachedAttention(output, q, cache, 32, [Row(query: 40)], 2, 2, 16, 1f, scores)));
        Assert.Contains("rows[0].Keys", Message(() => Backend.CachedAttention(output, q, cache, 32, [Row(keys: -1)], 2, 2, 16, 1f, scores)));
        Assert.Contains("rows[0].Keys", Message(() => Backend.CachedAttention(output, q, cache, 32, [Row(keys: long.MaxValue - 10)], 2, 2, 16, 1f, scores))); // no overflow past the check
        Assert.Contains("cacheStride", Message(() => Backend.CachedAttention(output, q, cache, 31, [Row()], 2, 2, 16, 1f, scores)));
        Assert.Contains("heads", Message(() => Backend.CachedAttention(output, q, cache, 32, [Row()], 0, 1, 16, 1f, scores)));
        Assert.Contains("scale", Message(() => Backend.CachedAttention(output, q, cache, 32, [Row()], 2, 2, 16, float.NaN, scores)));
        Assert.Contains("kvHeads", Message(() => Backend.CachedAttention(output, q, cache, 32, [Row()], 2, 3, 16, 1f, scores)));
        Assert.Contains("must not share memory", Message(() => Backend.CachedAttention(cache, q, cache, 32, [Row()], 2, 2, 16, 1f, scores)));
        Assert.Contains("output", Message(() => Backend.CachedAttention(Foreign(64), q, cache, 32, [Row()], 2, 2, 16, 1f, scores)));
        Assert.Contains("scores", Message(() => Backend.CachedAttention(output, q, cache, 32, [Row(values: 96, length: 5)], 2, 2, 16, 1f, Upload(new float[9], 9))));
    }
}

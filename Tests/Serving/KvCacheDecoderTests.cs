using LoraRuntime.Layers.Serving;
using Xunit;

namespace LoraRuntime.Tests.Serving;

/// <summary>
/// The KV-cache decoder against the training layers' non-cached forward, and a mixed-adapter batch against each
/// request run alone: the same greedy tokens and logits within 1e-5, row for row.
/// </summary>
public sealed class KvCacheDecoderTests : IDisposable
{
    private const float Tolerance = 1e-5f;
    private readonly ServingFixture _f = new();

    public void Dispose() => _f.Dispose();

    private sealed record Request(string? Adapter, int[] Prompt, int Tokens);

    private static readonly Request[] Requests =
    [
        new("qv", [1, 2, 3, 4, 5], 7),
        new("all", [7, 7, 1], 9),
        new(null, [3, 12, 0, 9, 4, 4, 2, 8], 5),
        new("mlp", [11], 10),
        new("qv", [6, 5, 4, 3, 2, 1, 0, 10, 11], 6),
        new("all", [2, 9], 8),
    ];

    /// <summary>Greedy tokens and the logits each was chosen from, for each request, all run through one decoder at once.</summary>
    private static (List<int>[] Tokens, List<float[]>[] Logits) RunTogether(KvCacheDecoder decoder, AdapterBank bank, Request[] requests, int[] joinAt)
    {
        int v = decoder.Vocabulary, n = requests.Length;
        var adapters = requests.Select(r => r.Adapter is null ? null : bank.TryAcquire(r.Adapter)).ToArray();
        var tokens = requests.Select(_ => new List<int>()).ToArray();
        var logits = requests.Select(_ => new List<float[]>()).ToArray();
        var cached = new int[n];
        var rows = new List<DecodeRow>();
        var input = new List<int>();
        var index = new List<int>();
        var output = new float[n * v];
        for (int step = 0; index.Count > 0 || step == 0 || tokens.Where((t, i) => t.Count < requests[i].Tokens).Any(); step++)
        {
            rows.Clear();
            input.Clear();
            index.Clear();
            for (int i = 0; i < n; i++)
            {
                if (step < joinAt[i] || tokens[i].Count >= requests[i].Tokens) continue;
                var feed = cached[i] == 0 ? requests[i].Prompt : [tokens[i][^1]];
                rows.Add(new DecodeRow(Slot: i, Start: cached[i], Count: feed.Length, adapters[i]));
                input.AddRange(feed);
                index.Add(i);
            }
            if (rows.Count == 0) continue;
            decoder.Forward(rows.ToArray(), input.ToArray(), output);
            for (int k = 0; k < rows.Count; k++)
            {
                int i = index[k];
                cached[i] += rows[k].Count;
                var row = output.AsSpan(k * v, v).ToArray();
                logits[i].Add(row);
                tokens[i].Add(Array.IndexOf(row, row.Max()));
            }
            if (step > 200) throw new InvalidOperationException("the test loop does not finish");
        }
        foreach (var a in adapters) if (a is not null) bank.Release(a);
        return (tokens, logits);
    }

    private (KvCacheDecoder Decoder, AdapterBank Bank) Serve(int slots)
    {
        var bank = new AdapterBank(_f.Layout, budgetBytes: 1 << 20, maxRank: 8);
        foreach (var name in ServingFixture.Adapters.Keys) bank.Load(name, _f.AdapterDirectory(name));
        return (new KvCacheDecoder(_f.Layout, slots, maxStepTokens: 48, maxRank: 8), bank);
    }

    [Fact]
    public void Prefill_and_decode_match_the_non_cached_model_with_each_adapter()
    {
        var (decoder, bank) = Serve(slots: 1);
        using var _ = decoder;
        using var __ = bank;
        foreach (var request in Requests.DistinctBy(r => r.Adapter))
        {
            var (tokens, logits) = RunTogether(decoder, bank, [request], [0]);
            using var reference = _f.Reference(request.Adapter);
            var sequence = request.Prompt.ToList();
            for (int step = 0; step < request.Tokens; step++)
            {
                var expected = reference.LastLogits(sequence);
                AssertClose(expected, logits[0][step], $"adapter {request.Adapter ?? "none"}, step {step}");
                int greedy = Array.IndexOf(expected, expected.Max());
                Assert.Equal(greedy, tokens[0][step]);
                sequence.Add(greedy);
            }
        }
    }

    [Fact]
    public void A_mixed_adapter_batch_gives_each_row_what_it_gets_alone()
    {
        var (decoder, bank) = Serve(slots: Requests.Length);
        using var _ = decoder;
        using var __ = bank;
        // Requests join at different steps, so prefills and decode rows of different adapters share steps.
        var together = RunTogether(decoder, bank, Requests, [0, 0, 1, 2, 2, 5]);
        for (int i = 0; i < Requests.Length; i++)
        {
            var alone = RunTogether(decoder, bank, [Requests[i]], [0]);
            Assert.Equal(alone.Tokens[0], together.Tokens[i]);
            for (int step = 0; step < alone.Logits[0].Count; step++)
                AssertClose(alone.Logits[0][step], together.Logits[i][step], $"request {i}, step {step}");
        }
        // The adapters change the output: a test that could not fail would not show the rows kept their own adapters.
        var baseOnly = RunTogether(decoder, bank, [Requests[0] with { Adapter = null }], [0]);
        Assert.True(MaxDifference(baseOnly.Logits[0][0], together.Logits[0][0]) > 1e-3);
    }

    [Fact]
    public void After_a_merge_refreshed_weights_give_the_adapter_without_it()
    {
        var (decoder, bank) = Serve(slots: 1);
        using var _ = decoder;
        using var __ = bank;
        var request = Requests[1];
        var unmerged = RunTogether(decoder, bank, [request], [0]);
        var baseOnly = RunTogether(decoder, bank, [request with { Adapter = null }], [0]);
        using (var lora = new LoraRuntime.Layers.Adapters.LoraModel(_f.Served))
        {
            LoraRuntime.Layers.Adapters.PeftAdapterFiles.Load(lora, "all", _f.AdapterDirectory("all"));
            lora.Merge("all");
            var stale = RunTogether(decoder, bank, [request with { Adapter = null }], [0]);
            AssertClose(baseOnly.Logits[0][0], stale.Logits[0][0], "before RefreshWeights the snapshot is the base");
            decoder.RefreshWeights();
            var merged = RunTogether(decoder, bank, [request with { Adapter = null }], [0]);
            Assert.Equal(unmerged.Tokens[0], merged.Tokens[0]);
            for (int step = 0; step < merged.Logits[0].Count; step++) AssertClose(unmerged.Logits[0][step], merged.Logits[0][step], $"merged, step {step}");
            lora.Unmerge();
        }
        decoder.RefreshWeights();
        AssertClose(baseOnly.Logits[0][0], RunTogether(decoder, bank, [request with { Adapter = null }], [0]).Logits[0][0], "unmerged again");
    }

    [Fact]
    public void Bad_rows_are_refused_before_anything_runs()
    {
        var (decoder, bank) = Serve(slots: 2);
        using var _ = decoder;
        using var __ = bank;
        var logits = new float[2 * decoder.Vocabulary];
        var e = Assert.Throws<ArgumentException>(() => decoder.Forward([new DecodeRow(0, 0, 1, null), new DecodeRow(0, 1, 1, null)], [1, 2], logits));
        Assert.Contains("slot 0 appears twice", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => decoder.Forward([new DecodeRow(2, 0, 1, null)], [1], logits));
        Assert.Throws<ArgumentOutOfRangeException>(() => decoder.Forward([new DecodeRow(0, 23, 2, null)], [1, 1], logits));
        Assert.Throws<ArgumentOutOfRangeException>(() => decoder.Forward([new DecodeRow(0, 0, 1, null)], [13], logits));
        Assert.Contains("expected 3 tokens", Assert.Throws<ArgumentException>(() => decoder.Forward([new DecodeRow(0, 0, 3, null)], [1], logits)).Message);
        bank.TryGet("qv", out var evicted);
        Assert.False(evicted.IsResident);
        Assert.Contains("must be resident", Assert.Throws<ArgumentException>(() => decoder.Forward([new DecodeRow(0, 0, 1, evicted)], [1], logits)).Message);
    }

    [Fact]
    public void A_decode_step_allocates_nothing()
    {
        var (decoder, bank) = Serve(slots: 4);
        using var _ = decoder;
        using var __ = bank;
        var adapters = new[] { bank.TryAcquire("qv"), bank.TryAcquire("all"), null, bank.TryAcquire("mlp") };
        var logits = new float[4 * decoder.Vocabulary];
        var rows = new DecodeRow[4];
        var tokens = new int[4];
        for (int i = 0; i < 4; i++) rows[i] = new DecodeRow(i, 0, 1, adapters[i]);
        var sampler = new TokenSampler(decoder.Vocabulary);
        var random = new LoraRuntime.Layers.Training.TrainingRandom(7);
        var sampling = new LoraRuntime.Layers.SamplingOptions(Temperature: 0.9f, TopK: 5);
        void Step()
        {
            decoder.Forward(rows, tokens, logits);
            for (int i = 0; i < 4; i++)
            {
                tokens[i] = sampler.Sample(logits.AsSpan(i * decoder.Vocabulary, decoder.Vocabulary), sampling, 0.9f, ref random);
                rows[i] = rows[i] with { Start = rows[i].Start + 1 };
            }
        }
        for (int i = 0; i < 3; i++) Step();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 15; i++) Step();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    private static double MaxDifference(float[] a, float[] b) => a.Zip(b, (x, y) => Math.Abs((double)x - y)).Max();

    private static void AssertClose(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = MaxDifference(expected, actual);
        Assert.True(worst <= Tolerance, $"{what}: logits differ by {worst:g3} > {Tolerance}");
    }
}

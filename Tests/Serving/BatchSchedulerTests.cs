using LoraRuntime.Layers;
using LoraRuntime.Layers.Serving;
using LoraRuntime.Layers.Text;
using Xunit;

namespace LoraRuntime.Tests.Serving;

/// <summary>Continuous batching: concurrent callers get what each request gets alone; stop strings, limits, seeds, validation.</summary>
public sealed class BatchSchedulerTests : IDisposable
{
    private static readonly CharTokenizer Tokenizer = new("abcdefghijklm");
    private readonly ServingFixture _f = new();
    private readonly AdapterBank _bank;

    public BatchSchedulerTests()
    {
        _bank = new AdapterBank(_f.Layout, 1 << 20, maxRank: 8);
        foreach (var name in ServingFixture.Adapters.Keys) _bank.Load(name, _f.AdapterDirectory(name));
    }

    public void Dispose()
    {
        _bank.Dispose();
        _f.Dispose();
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private BatchScheduler Scheduler(int slots, int stepTokens = 48, bool start = true) =>
        new(new KvCacheDecoder(_f.Layout, slots, stepTokens, 8), _bank, Tokenizer, start);

    private static CompletionRequest Request(int i) => new()
    {
        Adapter = (i % 4) switch { 0 => "qv", 1 => "all", 2 => null, _ => "mlp" },
        Prompt = Enumerable.Range(0, 1 + i * 7 % 20).Select(t => (t * 5 + i) % 13).ToArray(),
        MaxTokens = 3 + i % 5,
        Sampling = new SamplingOptions(Temperature: i % 3 == 0 ? 0 : 0.8f, TopK: i % 2 * 4, Seed: (ulong)i),
        TopP = i % 5 == 0 ? 0.7f : 1f,
    };

    [Fact]
    public async Task Concurrent_callers_get_what_each_request_gets_alone()
    {
        const int count = 16;
        var alone = new CompletionResult[count];
        using (var single = Scheduler(slots: 1))
            for (int i = 0; i < count; i++) alone[i] = await single.SubmitAsync(Request(i), Ct);
        // Four slots for sixteen requests and a token budget of 16: admissions between steps, prompts in chunks.
        using var scheduler = Scheduler(slots: 4, stepTokens: 16);
        var tasks = Enumerable.Range(0, count).Select(i => Task.Run(() => scheduler.SubmitAsync(Request(i), Ct))).ToArray();
        var together = await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(30), Ct);
        for (int i = 0; i < count; i++)
        {
            Assert.Equal(alone[i].Tokens, together[i].Tokens);
            Assert.Equal(Request(i).Adapter, together[i].Adapter);
            Assert.Equal(Tokenizer.Decode(together[i].Tokens), together[i].Text);
        }
        var metrics = scheduler.Metrics.Snapshot();
        Assert.Equal(count, metrics.Requests);
        Assert.True(metrics.MeanBatchRows > 1, $"requests were batched: {metrics.MeanBatchRows} rows per step");
        Assert.Equal(0, scheduler.ActiveCount);
    }

    [Fact]
    public async Task Adapters_load_and_unload_while_requests_run()
    {
        const int count = 12;
        var alone = new CompletionResult[count];
        using (var single = Scheduler(slots: 1))
            for (int i = 0; i < count; i++) alone[i] = await single.SubmitAsync(Request(i), Ct);
        using var scheduler = Scheduler(slots: 3);
        var churn = Task.Run(() =>
        {
            for (int k = 0; k < 20; k++)
            {
                _bank.Load("churn", _f.AdapterDirectory("all"));
                _ = scheduler.SubmitAsync(new CompletionRequest { Adapter = "churn", Prompt = [1, 2], MaxTokens = 2 }, Ct);
                _bank.Unload("churn");
            }
        }, Ct);
        var results = await Task.WhenAll(Enumerable.Range(0, count).Select(i => scheduler.SubmitAsync(Request(i), Ct))).WaitAsync(TimeSpan.FromSeconds(30), Ct);
        await churn.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        for (int i = 0; i < count; i++) Assert.Equal(alone[i].Tokens, results[i].Tokens);
        Assert.False(_bank.TryGet("churn", out _));
    }

    [Fact]
    public async Task Stop_strings_end_the_text_before_them_and_max_tokens_ends_it_at_the_limit()
    {
        using var scheduler = Scheduler(slots: 2);
        var request = new CompletionRequest { Adapter = "all", Prompt = [1, 2, 3], MaxTokens = 12 };
        var full = await scheduler.SubmitAsync(request, Ct);
        Assert.Equal("length", full.FinishReason);
        Assert.Equal(12, full.Tokens.Length);
        string stop = full.Text.Substring(4, 2);
        int at = full.Text.IndexOf(stop, StringComparison.Ordinal);
        var stopped = await scheduler.SubmitAsync(request with { Stop = ["zz", stop] }, Ct);
        Assert.Equal("stop", stopped.FinishReason);
        Assert.Equal(full.Text[..at], stopped.Text);
        Assert.Equal(full.Tokens[..(at + 2)], stopped.Tokens);
        // A prompt that fills the context leaves room for one token.
        var longest = await scheduler.SubmitAsync(request with { Prompt = new int[ServingFixture.Config.BlockSize] }, Ct);
        Assert.Single(longest.Tokens);
    }

    [Fact]
    public async Task Seeds_reproduce_draws_and_different_seeds_differ()
    {
        using var scheduler = Scheduler(slots: 3);
        CompletionRequest Sampled(ulong seed) => new()
        {
            Adapter = "mlp", Prompt = [4], MaxTokens = 20, Sampling = new SamplingOptions(Temperature: 1.5f, Seed: seed), TopP = 0.95f,
        };
        var results = await Task.WhenAll(scheduler.SubmitAsync(Sampled(1), Ct), scheduler.SubmitAsync(Sampled(1), Ct), scheduler.SubmitAsync(Sampled(2), Ct));
        Assert.Equal(results[0].Tokens, results[1].Tokens);
        Assert.NotEqual(results[0].Tokens, results[2].Tokens);
    }

    [Fact]
    public void Bad_requests_are_refused_at_submission_naming_the_field()
    {
        using var scheduler = Scheduler(slots: 1);
        var good = new CompletionRequest { Prompt = [1] };
        Assert.Equal("prompt", Assert.Throws<ArgumentException>(() => scheduler.Validate(good with { Prompt = new int[25] })).ParamName);
        Assert.Equal("prompt", Assert.Throws<ArgumentException>(() => scheduler.Validate(good with { Prompt = [13] })).ParamName);
        Assert.Equal("max_tokens", Assert.Throws<ArgumentException>(() => scheduler.Validate(good with { MaxTokens = 0 })).ParamName);
        Assert.Equal("topP", Assert.Throws<ArgumentOutOfRangeException>(() => scheduler.Validate(good with { TopP = 0 })).ParamName);
        Assert.Equal("model", Assert.Throws<ArgumentException>(() => scheduler.Validate(good with { Adapter = "nope" })).ParamName);
        Assert.Equal("stop", Assert.Throws<ArgumentException>(() => scheduler.Validate(good with { Stop = [""] })).ParamName);
    }

    [Fact]
    public void A_scheduler_decode_step_allocates_nothing()
    {
        using var scheduler = Scheduler(slots: 4, start: false);
        var tasks = Enumerable.Range(0, 4).Select(i => scheduler.SubmitAsync(Request(i) with { MaxTokens = 20, Stop = ["mmmmmm"], Prompt = [i] }, Ct)).ToArray();
        for (int i = 0; i < 3; i++) scheduler.Step();
        int rows = 0;
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10; i++) rows += scheduler.Step();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(40, rows);
        Assert.Equal(0, allocated);
        while (scheduler.Step() > 0) { }
        Assert.All(tasks, t => Assert.True(t.IsCompletedSuccessfully));
    }

    [Fact]
    public async Task A_tokenizer_smaller_than_the_models_vocabulary_gives_text_for_its_own_ids_only()
    {
        // A model V padded past its tokenizer's (GPT-2 checkpoints pad 50257 to 50304): ids past it have no text.
        var small = new CharTokenizer("abcdefghij");
        using var decoder = new KvCacheDecoder(_f.Layout, 1, 16, 8);
        using var scheduler = new BatchScheduler(decoder, _bank, small);
        bool sawPadding = false;
        for (int i = 0; i < 8; i++)
        {
            var result = await scheduler.SubmitAsync(Request(i) with { MaxTokens = 12, Stop = [] }, Ct);
            sawPadding |= result.Tokens.Any(t => t >= 10);
            Assert.Equal(small.Decode(result.Tokens.Where(t => t < 10).ToArray()), result.Text);
        }
        Assert.True(sawPadding, "some generation drew an id past the tokenizer's");
        Assert.Equal("tokenizer", Assert.Throws<ArgumentException>(() => new BatchScheduler(decoder, _bank, new CharTokenizer("abcdefghijklmn"), start: false)).ParamName);
    }
}

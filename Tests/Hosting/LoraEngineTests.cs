using LoraRuntime.Hosting;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Layers.Serving;
using LoraRuntime.Layers.Text;
using LoraRuntime.Tests.Serving;
using Xunit;

namespace LoraRuntime.Tests.Hosting;

/// <summary>
/// The embedding API on a model directory of ours with three PEFT adapters: forward logits against the training layers,
/// generations against the scheduler and the training model, adapters loaded and unloaded, bad input, cancellation,
/// concurrent callers, and a forward pass that allocates nothing.
/// </summary>
public sealed class LoraEngineTests : IDisposable
{
    private const double Tolerance = 1e-5;
    private static readonly CharTokenizer Tokenizer = new("abcdefghijklm");
    private readonly ServingFixture _f = new();
    private readonly string _modelDir;

    public LoraEngineTests()
    {
        _modelDir = Path.Combine(_f.Root, "model");
        GptFiles.Save(_f.Served, Tokenizer, _modelDir);
    }

    public void Dispose() => _f.Dispose();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly EngineOptions Small = new() { Device = "cpu", MaxBatch = 4, MaxStepTokens = 16, MaxRank = 8, AdapterBudgetBytes = 1 << 20 };

    private LoraEngine Open(EngineOptions? options = null)
    {
        var engine = LoraEngine.Load(_modelDir, options ?? Small);
        foreach (var name in ServingFixture.Adapters.Keys) engine.LoadAdapter(name, _f.AdapterDirectory(name));
        return engine;
    }

    /// <summary>max |a − b| / max |b|.</summary>
    private static double Error(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        double error = 0, scale = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            error = Math.Max(error, Math.Abs(actual[i] - expected[i]));
            scale = Math.Max(scale, Math.Abs(expected[i]));
        }
        return error / scale;
    }

    private static int[] Tokens(int count, int seed) => Enumerable.Range(0, count).Select(i => (i * 7 + seed * 3 + 1) % 13).ToArray();

    [Fact]
    public void Forward_logits_equal_the_training_models_forward_with_each_adapter()
    {
        using var engine = Open();
        Assert.Equal("cpu", engine.Device);
        Assert.Equal(ModelLayout.LoraRuntime, engine.Layout);
        Assert.Equal(["all", "mlp", "qv"], engine.Adapters);
        var logits = new float[engine.Vocabulary];
        foreach (string? adapter in new[] { null, "qv", "all", "mlp" })
        {
            using var reference = _f.Reference(adapter);
            // 20 tokens take two chunks of the 16-token step; then a prefix of them, then one more token: one decode step.
            var tokens = Tokens(20, adapter?.Length ?? 0);
            engine.Forward(tokens, logits, adapter);
            Assert.True(Error(logits, reference.LastLogits(tokens)) <= Tolerance, $"{adapter ?? "base"}: {Error(logits, reference.LastLogits(tokens))}");
            engine.Forward(tokens.AsSpan(0, 9), logits, adapter);
            Assert.True(Error(logits, reference.LastLogits(tokens[..9])) <= Tolerance);
            engine.Forward(tokens.AsSpan(0, 10), logits, adapter);
            Assert.Equal(9, engine.LastForwardReused);
            Assert.True(Error(logits, reference.LastLogits(tokens[..10])) <= Tolerance);
            // The same tokens again recompute the last one only; a different adapter reuses nothing.
            engine.Forward(tokens.AsSpan(0, 10), logits, adapter);
            Assert.Equal(9, engine.LastForwardReused);
            Assert.True(Error(logits, reference.LastLogits(tokens[..10])) <= Tolerance);
        }
        engine.Forward(Tokens(10, 0), logits, "qv", 0.5f);
        Assert.Equal(0, engine.LastForwardReused);
        // The text overload encodes with the model's tokenizer, which the engine exposes too.
        using var plain = _f.Reference(null);
        Assert.True(Error(engine.Forward("abcabc"), plain.LastLogits(Tokenizer.Encode("abcabc"))) <= Tolerance);
        Assert.True(engine.HasTokenizer);
        Assert.Equal(Tokenizer.Encode("abcabm"), engine.Encode("abcabm"));
        Assert.Equal("mabc", engine.Decode([12, 0, 1, 2]));
    }

    [Fact]
    public async Task Generation_equals_the_schedulers_and_the_training_models_greedy_tokens()
    {
        using var engine = Open();
        using var bank = new AdapterBank(_f.Layout, 1 << 20, maxRank: 8);
        foreach (var name in ServingFixture.Adapters.Keys) bank.Load(name, _f.AdapterDirectory(name));
        using var decoder = new KvCacheDecoder(_f.Layout, 2, 16, 8);
        using var scheduler = new BatchScheduler(decoder, bank, Tokenizer);
        foreach (string? adapter in new[] { null, "qv", "all", "mlp" })
        {
            var prompt = Tokens(5, adapter?.Length ?? 1);
            var result = await engine.GenerateAsync(prompt, new GenerationOptions { Adapter = adapter, MaxTokens = 8 }, Ct);
            var direct = await scheduler.SubmitAsync(new CompletionRequest { Adapter = adapter, Prompt = prompt, MaxTokens = 8 }, Ct);
            Assert.Equal(direct.Tokens, result.Tokens);
            using var model = _f.NewModel();
            using var lora = new LoraModel(model);
            if (adapter is not null) PeftAdapterFiles.Load(lora, adapter, _f.AdapterDirectory(adapter)).Training = false;
            using var generator = new Generator(model);
            Assert.Equal(generator.Generate(prompt, 8, new SamplingOptions(Temperature: 0))[prompt.Length..], result.Tokens);
            Assert.Equal(Tokenizer.Decode(result.Tokens), result.Text);
            Assert.Equal("length", result.FinishReason);
            Assert.Equal(5, result.PromptTokens);
            Assert.True(result.FirstTokenLatency > TimeSpan.Zero && result.FirstTokenLatency <= result.Latency);
        }
        // Text in, text out, with a stop string cut off.
        var full = await engine.GenerateAsync("abc", new GenerationOptions { Adapter = "qv", MaxTokens = 6 }, Ct);
        string stop = full.Text.Substring(3, 2);
        var stopped = await engine.GenerateAsync("abc", new GenerationOptions { Adapter = "qv", MaxTokens = 6, Stop = [stop] }, Ct);
        Assert.Equal(full.Text[..full.Text.IndexOf(stop, StringComparison.Ordinal)], stopped.Text);
        Assert.Equal("stop", stopped.FinishReason);
        var stats = engine.Stats;
        Assert.Equal(6, stats.Generation.Requests);
        Assert.True(stats.Generation.GeneratedTokens >= 32);
    }

    [Fact]
    public void Unloading_an_idle_adapter_returns_its_memory_and_forgets_its_name()
    {
        using var engine = Open();
        var info = engine.LoadAdapter("extra", _f.AdapterDirectory("all"));
        Assert.Equal("extra", info.Name);
        Assert.Equal(4, info.MaxRank);
        var logits = new float[engine.Vocabulary];
        engine.Forward(Tokens(6, 1), logits, "extra");
        var before = engine.Stats;
        Assert.Equal(4, before.Adapters.Loaded);
        Assert.Equal(1, before.Adapters.Resident);
        Assert.True(engine.UnloadAdapter("extra"));
        var after = engine.Stats;
        Assert.Equal(3, after.Adapters.Loaded);
        Assert.Equal(0, after.Adapters.Resident);
        Assert.True(before.Pool.BytesInUse - after.Pool.BytesInUse >= info.Bytes, $"{before.Pool.BytesInUse} → {after.Pool.BytesInUse} bytes in use");
        Assert.DoesNotContain("extra", engine.Adapters);
        Assert.False(engine.UnloadAdapter("extra"));
        Assert.Equal("adapter", Assert.Throws<ArgumentException>(() => engine.Forward(Tokens(6, 1), logits, "extra")).ParamName);
        // The name is free again, for other weights.
        engine.LoadAdapter("extra", _f.AdapterDirectory("qv"));
        using var reference = _f.Reference("qv");
        engine.Forward(Tokens(6, 1), logits, "extra");
        Assert.True(Error(logits, reference.LastLogits(Tokens(6, 1))) <= Tolerance);
    }

    [Fact]
    public async Task Bad_input_is_an_argument_exception_naming_the_argument()
    {
        using var engine = Open(Small with { MaxSequence = 12 });
        var logits = new float[engine.Vocabulary];
        Assert.Equal(12, engine.MaxSequence);
        Assert.Equal("tokens", Assert.Throws<ArgumentException>(() => engine.Forward([], logits)).ParamName);
        Assert.Equal("tokens", Assert.Throws<ArgumentException>(() => engine.Forward(Tokens(13, 0), logits)).ParamName);
        Assert.Equal("tokens", Assert.Throws<ArgumentOutOfRangeException>(() => engine.Forward([1, 13], logits)).ParamName);
        Assert.Equal("logits", Assert.Throws<ArgumentException>(() => engine.Forward([1, 2], new float[12])).ParamName);
        Assert.Equal("scale", Assert.Throws<ArgumentOutOfRangeException>(() => engine.Forward([1, 2], logits, "qv", float.NaN)).ParamName);
        var unknown = Assert.Throws<ArgumentException>(() => engine.Forward([1, 2], logits, "nope"));
        Assert.Equal("adapter", unknown.ParamName);
        Assert.Contains("all, mlp, qv", unknown.Message);
        Assert.Equal("text", Assert.Throws<ArgumentException>(() => engine.Forward("xyz")).ParamName);
        Assert.Equal("text", Assert.Throws<ArgumentException>(() => engine.Encode("xyz")).ParamName);
        Assert.Equal("text", Assert.Throws<ArgumentException>(() => engine.Encode("")).ParamName);
        Assert.Equal("tokens", Assert.Throws<ArgumentOutOfRangeException>(() => engine.Decode([1, 13])).ParamName);
        Assert.Equal("tokens", Assert.Throws<ArgumentOutOfRangeException>(() => engine.Decode([-1])).ParamName);
        Assert.Equal("prompt", (await Assert.ThrowsAsync<ArgumentException>(() => engine.GenerateAsync("", new() { MaxTokens = 4 }, Ct))).ParamName);
        Assert.Equal("prompt", (await Assert.ThrowsAsync<ArgumentException>(() => engine.GenerateAsync("a z", new() { MaxTokens = 4 }, Ct))).ParamName);
        Assert.Equal("prompt", (await Assert.ThrowsAsync<ArgumentException>(() => engine.GenerateAsync(Tokens(13, 0), null, Ct))).ParamName);
        Assert.Equal("options", (await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => engine.GenerateAsync("abc", new() { MaxTokens = 0 }, Ct))).ParamName);
        Assert.Equal("options", (await Assert.ThrowsAsync<ArgumentException>(() => engine.GenerateAsync("abc", new() { Adapter = "nope", MaxTokens = 4 }, Ct))).ParamName);
        Assert.Equal("options", (await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => engine.GenerateAsync("abc", new() { Adapter = "qv", Scale = float.PositiveInfinity, MaxTokens = 4 }, Ct))).ParamName);
        await Assert.ThrowsAnyAsync<ArgumentException>(() => engine.GenerateAsync("abc", new() { TopP = 2, MaxTokens = 4 }, Ct));
        await Assert.ThrowsAnyAsync<ArgumentException>(() => engine.GenerateAsync("abc", new() { Temperature = -1, MaxTokens = 4 }, Ct));
        Assert.Equal("name", Assert.Throws<ArgumentException>(() => engine.LoadAdapter("qv", _f.AdapterDirectory("qv"))).ParamName);
        Assert.Throws<DirectoryNotFoundException>(() => engine.LoadAdapter("x", Path.Combine(_f.Root, "missing")));
        // The engine is unharmed.
        using var reference = _f.Reference("qv");
        engine.Forward([1, 2, 3], logits, "qv");
        Assert.True(Error(logits, reference.LastLogits([1, 2, 3])) <= Tolerance);

        Assert.Equal("options", Assert.Throws<ArgumentOutOfRangeException>(() => LoraEngine.Load(_modelDir, Small with { MaxBatch = 0 })).ParamName);
        Assert.Contains("MaxSequence", Assert.Throws<ArgumentOutOfRangeException>(() => LoraEngine.Load(_modelDir, Small with { MaxSequence = 25 })).Message);
        Assert.Contains("AdapterBudgetBytes", Assert.Throws<ArgumentOutOfRangeException>(() => LoraEngine.Load(_modelDir, Small with { AdapterBudgetBytes = 0 })).Message);
        Assert.Equal("options", Assert.Throws<ArgumentException>(() => LoraEngine.Load(_modelDir, Small with { Device = "tpu" })).ParamName);
        Assert.Throws<DirectoryNotFoundException>(() => LoraEngine.Load(Path.Combine(_f.Root, "none"), Small));
    }

    [Fact]
    public void Asking_for_cuda_without_a_usable_gpu_is_a_device_exception()
    {
        Assert.SkipWhen(Devices.Probe.Available && Devices.CudaLibrariesProblem is null, "CUDA is usable here");
        var e = Assert.Throws<LoraDeviceException>(() => LoraEngine.Load(_modelDir, Small with { Device = "cuda" }));
        Assert.Contains("CUDA", e.Message);
    }

    [Fact]
    public async Task A_cancelled_generation_ends_with_operation_canceled_and_the_engine_serves_on()
    {
        using var engine = Open(Small with { MaxBatch = 1 });
        var expected = await engine.GenerateAsync("abc", new GenerationOptions { Adapter = "all", MaxTokens = 5 }, Ct);
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => engine.GenerateAsync("abc", new GenerationOptions { MaxTokens = 20 }, cancelled.Token));
        var again = await engine.GenerateAsync("abc", new GenerationOptions { Adapter = "all", MaxTokens = 5 }, Ct);
        Assert.Equal(expected.Tokens, again.Tokens);
        Assert.Equal(0, engine.Stats.Generation.Failed); // a cancellation is not a failure
        Assert.Equal(1, engine.Stats.Generation.Cancelled);
    }

    [Fact]
    public async Task Concurrent_generations_and_forwards_get_what_each_gets_alone()
    {
        using var engine = Open();
        string?[] adapters = [null, "qv", "all", "mlp"];
        float[] scales = [1f, 0.5f, -1f, 2f];
        GenerationOptions Options(int i) => new()
        {
            Adapter = adapters[i % 4], Scale = scales[i / 4 % 4], MaxTokens = 3 + i % 5, Temperature = i % 3 == 0 ? 0 : 0.8f, TopK = i % 2 * 4,
            TopP = i % 5 == 0 ? 0.7f : 1f, Seed = (ulong)i,
        };
        const int count = 16;
        var alone = new GenerationResult[count];
        for (int i = 0; i < count; i++) alone[i] = await engine.GenerateAsync(Tokens(1 + i * 7 % 20, i), Options(i), Ct);
        int v = engine.Vocabulary;
        var forwardAlone = new float[4][];
        for (int k = 0; k < 4; k++)
        {
            forwardAlone[k] = new float[v];
            engine.Forward(Tokens(8 + k, k), forwardAlone[k], adapters[k], scales[k]);
        }
        var generations = Enumerable.Range(0, count).Select(i => Task.Run(() => engine.GenerateAsync(Tokens(1 + i * 7 % 20, i), Options(i), Ct), Ct)).ToArray();
        var forwards = Enumerable.Range(0, 4).Select(k => Task.Run(() =>
        {
            var logits = new float[v];
            for (int r = 0; r < 10; r++)
            {
                engine.Forward(Tokens(8 + k, k), logits, adapters[k], scales[k]);
                Assert.True(Error(logits, forwardAlone[k]) <= Tolerance, $"forward {k}, round {r}");
            }
        }, Ct)).ToArray();
        var together = await Task.WhenAll(generations).WaitAsync(TimeSpan.FromSeconds(60), Ct);
        await Task.WhenAll(forwards).WaitAsync(TimeSpan.FromSeconds(60), Ct);
        for (int i = 0; i < count; i++) Assert.Equal(alone[i].Tokens, together[i].Tokens);
        Assert.Equal(4 + 40, engine.Stats.Forward.Count);
    }

    [Fact]
    public void A_steady_forward_allocates_nothing_and_its_latency_is_counted()
    {
        using var engine = Open();
        var logits = new float[engine.Vocabulary];
        int[] first = Tokens(12, 1), second = Tokens(12, 2), longer = Tokens(13, 1);
        void Round()
        {
            engine.Forward(first, logits, "all", 0.5f); // a full prefill: second differs in its first token
            engine.Forward(second, logits, "all", 0.5f);
            engine.Forward(first, logits, null);
            engine.Forward(longer, logits); // one decode step after first
        }
        for (int i = 0; i < 3; i++) Round();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 20; i++) Round();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
        var stats = engine.Stats.Forward;
        Assert.Equal(23 * 4, stats.Count);
        Assert.True(stats.P50Ms > 0 && stats.P50Ms <= stats.P99Ms && stats.P99Ms <= stats.P999Ms);
    }

    [Fact]
    public void An_adapter_budget_held_by_running_requests_is_insufficient_memory_until_they_finish()
    {
        long largest;
        using (var probe = Open()) largest = probe.Adapters.Max(name => probe.Bank.TryGet(name, out var a) ? a.Bytes : 0);
        // The budget holds the largest adapter ("all") alone.
        using var engine = Open(Small with { AdapterBudgetBytes = largest });
        var logits = new float[engine.Vocabulary];
        // What a running generation does: pin its adapter.
        var pinned = engine.Bank.TryAcquire("all")!;
        var e = Assert.Throws<InsufficientMemoryException>(() => engine.Forward(Tokens(5, 1), logits, "mlp"));
        Assert.Contains("AdapterBudgetBytes", e.Message);
        engine.Forward(Tokens(5, 1), logits, "all"); // the pinned one still serves
        engine.Bank.Release(pinned);
        engine.Forward(Tokens(5, 1), logits, "mlp"); // evicts the idle one
        Assert.Equal(1, engine.Stats.Adapters.Evictions);
    }
}

using System.Net;
using System.Text;
using System.Text.Json;
using LoraRuntime.Cli.Serve;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Serving;
using LoraRuntime.Layers.Text;
using Xunit;

namespace LoraRuntime.Tests.Serving;

/// <summary>
/// <c>lora serve</c> against careless and hostile clients: the API key on every endpoint, adapter loading off by default
/// and confined to the adapter root (paths through <c>..</c> and links refused with one message whether or not they
/// exist), unloading an adapter in use, a full queue (429), a deadline (504), and streamed answers that join to the
/// whole one and free their slot when the client leaves.
/// </summary>
public sealed class ServeSafetyTests : IDisposable
{
    private static readonly CharTokenizer Tokenizer = new("abcdefghijklm");
    private readonly ServingFixture _f = new();
    private readonly string _modelDir, _outsideDir;

    public ServeSafetyTests()
    {
        _modelDir = Path.Combine(_f.Root, "model");
        GptFiles.Save(_f.Served, Tokenizer, _modelDir);
        // An adapter outside the root, and links inside the root that lead out of it.
        _outsideDir = Path.Combine(Path.GetTempPath(), "lora-outside-" + Guid.NewGuid().ToString("N"));
        CopyDirectory(_f.AdapterDirectory("qv"), Path.Combine(_outsideDir, "secret"));
        Directory.CreateSymbolicLink(Path.Combine(_f.Root, "escape"), Path.Combine(_outsideDir, "secret"));
        Directory.CreateSymbolicLink(Path.Combine(_f.Root, "up"), _outsideDir);
        Directory.CreateDirectory(Path.Combine(_f.Root, "mixed"));
        File.Copy(Path.Combine(_f.AdapterDirectory("qv"), "adapter_config.json"), Path.Combine(_f.Root, "mixed", "adapter_config.json"));
        File.CreateSymbolicLink(Path.Combine(_f.Root, "mixed", "adapter_model.safetensors"), Path.Combine(_outsideDir, "secret", "adapter_model.safetensors"));
        // A link that stays inside the root is followed.
        Directory.CreateSymbolicLink(Path.Combine(_f.Root, "alias"), _f.AdapterDirectory("mlp"));
    }

    public void Dispose()
    {
        _f.Dispose();
        if (Directory.Exists(_outsideDir)) Directory.Delete(_outsideDir, recursive: true);
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
    }

    private Task<TestServer> Start(ServeOptions options) =>
        TestServer.StartAsync(ServingHost.Open(_f.Backend, _modelDir, [("qv", _f.AdapterDirectory("qv"))], options));

    private static string Completion(string model, string prompt, int maxTokens, bool stream = false, string extra = "") =>
        $$"""{"model": "{{model}}", "prompt": "{{prompt}}", "max_tokens": {{maxTokens}}, "temperature": 0.8, "seed": 7, "stream": {{(stream ? "true" : "false")}}{{extra}}}""";

    /// <summary>Holds the scheduler's step lock on a thread of its own: requests queue and none runs until released.</summary>
    private static IDisposable Pause(ServingHost host)
    {
        var held = new ManualResetEventSlim();
        var release = new ManualResetEventSlim();
        var thread = new Thread(() =>
        {
            lock (host.Scheduler.StepLock)
            {
                held.Set();
                release.Wait();
            }
        });
        thread.Start();
        held.Wait();
        return new Release(() =>
        {
            release.Set();
            thread.Join();
        });
    }

    private sealed class Release(Action action) : IDisposable
    {
        public void Dispose() => action();
    }

    private static async Task Until(Func<bool> condition)
    {
        for (int i = 0; i < 500 && !condition(); i++) await Task.Delay(10, Ct);
        Assert.True(condition(), "the condition did not hold within 5 s");
    }

    [Fact]
    public async Task Every_endpoint_refuses_a_missing_or_wrong_key()
    {
        await using var server = await Start(new ServeOptions(Slots: 2, MaxStepTokens: 32, MaxRank: 8, ApiKey: "s3cret-key",
            AllowAdapterLoading: true, AdapterRoot: _f.Root));
        (HttpMethod, string, string?)[] endpoints =
        [
            (HttpMethod.Get, "/health", null), (HttpMethod.Get, "/v1/models", null), (HttpMethod.Get, "/metrics", null),
            (HttpMethod.Post, "/v1/completions", Completion("base", "abc", 2)), (HttpMethod.Post, "/adapters", """{"name": "m", "path": "mlp"}"""),
            (HttpMethod.Delete, "/adapters/qv", null), (HttpMethod.Get, "/nowhere", null),
        ];
        foreach (var (method, path, body) in endpoints)
            foreach (string? key in new[] { null, "", "wrong", "s3cret-ke", "s3cret-key2", "S3CRET-KEY" })
            {
                var (status, error, response) = await server.Send(method, path, body, key);
                Assert.True(status == HttpStatusCode.Unauthorized, $"{method} {path} with key '{key}': {status}");
                Assert.Equal("authentication_error", error.GetProperty("error").GetProperty("type").GetString());
                Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
            }
        var (ok, models, _) = await server.Send(HttpMethod.Get, "/v1/models", key: "s3cret-key");
        Assert.Equal(HttpStatusCode.OK, ok);
        Assert.Equal(2, models.GetProperty("data").GetArrayLength());
        var (done, _, _) = await server.Send(HttpMethod.Post, "/v1/completions", Completion("qv", "abc", 2), "s3cret-key");
        Assert.Equal(HttpStatusCode.OK, done);
    }

    [Fact]
    public async Task Adapter_loading_is_off_by_default_and_confined_to_the_root()
    {
        await using (var closed = await Start(new ServeOptions(Slots: 2, MaxStepTokens: 32, MaxRank: 8)))
        {
            var (status, body, _) = await closed.Send(HttpMethod.Post, "/adapters", $$"""{"name": "m", "path": {{JsonSerializer.Serialize(_f.AdapterDirectory("mlp"))}}}""");
            Assert.Equal(HttpStatusCode.Forbidden, status);
            Assert.Contains("--allow-adapter-loading", body.GetProperty("error").GetProperty("message").GetString());
            Assert.Equal(HttpStatusCode.Forbidden, (await closed.Send(HttpMethod.Delete, "/adapters/qv")).Status);
            Assert.Contains("qv", closed.Host.Bank.Names);
        }
        Assert.Throws<ArgumentException>(() => ServingHost.Open(_f.Backend, _modelDir, [], new ServeOptions(AllowAdapterLoading: true)));

        await using var server = await Start(new ServeOptions(Slots: 2, MaxStepTokens: 32, MaxRank: 8, AllowAdapterLoading: true, AdapterRoot: _f.Root));
        string outside = Path.Combine(_outsideDir, "secret");
        string[] refused =
        [
            outside, Path.Combine(_outsideDir, "no-such-adapter"), "../" + Path.GetFileName(_outsideDir) + "/secret", "mlp/../../" + Path.GetFileName(_outsideDir) + "/secret",
            "../no-such-place", "escape", "up/secret", "up/no-such-adapter", "mixed", "/etc", "/", "qv/../../", "qv\u0000x",
        ];
        var messages = new HashSet<string>();
        foreach (string path in refused)
        {
            var (status, body, _) = await server.Send(HttpMethod.Post, "/adapters", $$"""{"name": "x", "path": {{JsonSerializer.Serialize(path)}}}""");
            Assert.True(status == HttpStatusCode.BadRequest, $"{path}: {status}");
            messages.Add(body.GetProperty("error").GetProperty("message").GetString()!);
        }
        Assert.Equal([AdapterRoot.Outside], messages); // the same answer whether or not the path exists
        Assert.DoesNotContain("x", server.Host.Bank.Names);
        // Inside the root — directly, by an absolute path, or through a link that stays inside — it loads.
        Assert.Equal(HttpStatusCode.Created, (await server.Send(HttpMethod.Post, "/adapters", """{"name": "a", "path": "mlp"}""")).Status);
        Assert.Equal(HttpStatusCode.Created, (await server.Send(HttpMethod.Post, "/adapters", $$"""{"name": "b", "path": {{JsonSerializer.Serialize(_f.AdapterDirectory("all"))}}}""")).Status);
        Assert.Equal(HttpStatusCode.Created, (await server.Send(HttpMethod.Post, "/adapters", """{"name": "c", "path": "alias"}""")).Status);
    }

    [Fact]
    public async Task Unloading_an_adapter_in_use_is_refused_unless_forced()
    {
        await using var server = await Start(new ServeOptions(Slots: 2, MaxStepTokens: 32, MaxRank: 8, AllowAdapterLoading: true, AdapterRoot: _f.Root));
        Task<(HttpStatusCode Status, JsonElement Body, HttpResponseMessage Response)> waiting;
        using (Pause(server.Host))
        {
            waiting = server.Send(HttpMethod.Post, "/v1/completions", Completion("qv", "abc", 4));
            await Until(() => server.Host.Scheduler.RequestsUsing("qv") == 1);
            var (refused, body, _) = await server.Send(HttpMethod.Delete, "/adapters/qv");
            Assert.Equal(HttpStatusCode.Conflict, refused);
            Assert.Contains("force=true", body.GetProperty("error").GetProperty("message").GetString());
            Assert.Equal(HttpStatusCode.OK, (await server.Send(HttpMethod.Delete, "/adapters/qv?force=true")).Status);
        }
        // Forced while the request still waited for a slot: it ends with a clear 404, not a crash.
        var (status, error, _) = await waiting;
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Contains("qv", error.GetProperty("error").GetProperty("message").GetString());
    }

    [Fact]
    public async Task A_full_queue_answers_429_with_retry_after_and_a_deadline_504()
    {
        await using var server = await Start(new ServeOptions(Slots: 1, MaxStepTokens: 32, MaxRank: 8, MaxQueue: 1, RequestTimeout: TimeSpan.FromMilliseconds(300)));
        using (Pause(server.Host))
        {
            var first = server.Send(HttpMethod.Post, "/v1/completions", Completion("base", "abc", 4));
            await Until(() => server.Host.Scheduler.PendingCount == 1);
            var (busy, error, response) = await server.Send(HttpMethod.Post, "/v1/completions", Completion("base", "abc", 4));
            Assert.Equal(HttpStatusCode.TooManyRequests, busy);
            Assert.Equal(TimeSpan.FromSeconds(1), response.Headers.RetryAfter!.Delta);
            Assert.Equal("rate_limit_exceeded", error.GetProperty("error").GetProperty("type").GetString());
            // Still paused past its deadline: the waiting request is cancelled and answered 504.
            var (late, timeout, _) = await first;
            Assert.Equal(HttpStatusCode.GatewayTimeout, late);
            Assert.Contains("deadline", timeout.GetProperty("error").GetProperty("message").GetString());
        }
        Assert.Equal(HttpStatusCode.OK, (await server.Send(HttpMethod.Post, "/v1/completions", Completion("base", "abc", 4))).Status);
    }

    [Theory]
    [InlineData("base", "")]
    [InlineData("qv", "")]
    [InlineData("qv", ", \"stop\": [\"fg\", \"m\"]")]
    [InlineData("base", ", \"stop\": \"a\", \"stream_options\": {\"include_usage\": true}")]
    public async Task A_streamed_answer_is_the_whole_answer_token_for_token(string model, string extra)
    {
        await using var server = await Start(new ServeOptions(Slots: 2, MaxStepTokens: 32, MaxRank: 8));
        var (_, whole, _) = await server.Send(HttpMethod.Post, "/v1/completions", Completion(model, "bad", 12, extra: extra));
        string text = whole.GetProperty("choices")[0].GetProperty("text").GetString()!;
        int tokens = whole.GetProperty("usage").GetProperty("completion_tokens").GetInt32();

        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = new StringContent(Completion(model, "bad", 12, stream: true, extra: extra), Encoding.UTF8, "application/json"),
        };
        using var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, Ct);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        var events = new List<string>();
        using (var reader = new StreamReader(await response.Content.ReadAsStreamAsync(Ct)))
            for (string? line; (line = await reader.ReadLineAsync(Ct)) is not null;)
                if (line.StartsWith("data: ", StringComparison.Ordinal)) events.Add(line[6..]);
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement.Clone()).ToList();
        var withChoices = chunks.Where(c => c.GetProperty("choices").GetArrayLength() > 0).ToList();
        Assert.Equal(tokens + 1, withChoices.Count); // a chunk per token, then the finish reason
        Assert.Equal(text, string.Concat(withChoices.Select(c => c.GetProperty("choices")[0].GetProperty("text").GetString())));
        Assert.Equal(whole.GetProperty("choices")[0].GetProperty("finish_reason").GetString(),
            withChoices[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.All(withChoices[..^1], c => Assert.Equal(JsonValueKind.Null, c.GetProperty("choices")[0].GetProperty("finish_reason").ValueKind));
        if (extra.Contains("include_usage"))
            Assert.Equal(tokens, chunks[^1].GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        else Assert.Equal(chunks.Count, withChoices.Count);
    }

    [Fact]
    public async Task A_client_that_leaves_mid_stream_frees_its_slot()
    {
        await using var server = await Start(new ServeOptions(Slots: 2, MaxStepTokens: 32, MaxRank: 8));
        long failed = server.Host.Scheduler.Metrics.Snapshot().Failed;
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = new StringContent(Completion("qv", "a", 23, stream: true, extra: ", \"ignore_eos\": true"), Encoding.UTF8, "application/json"),
        })
        using (var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, Ct))
        {
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(Ct));
            Assert.StartsWith("data: ", await reader.ReadLineAsync(Ct));
        }
        // Gone: the request ends (finished or cancelled), its slot is free, and the server goes on answering.
        await Until(() => server.Host.Scheduler.ActiveCount == 0);
        Assert.True(server.Host.Scheduler.Metrics.Snapshot().Failed >= failed);
        Assert.Equal(HttpStatusCode.OK, (await server.Send(HttpMethod.Post, "/v1/completions", Completion("qv", "abc", 3))).Status);
    }

    [Fact]
    public async Task Shutting_down_finishes_the_requests_in_flight()
    {
        await using var server = await Start(new ServeOptions(Slots: 1, MaxStepTokens: 32, MaxRank: 8));
        Task<(HttpStatusCode Status, JsonElement Body, HttpResponseMessage Response)> inFlight;
        Task stopped;
        using (Pause(server.Host))
        {
            inFlight = server.Send(HttpMethod.Post, "/v1/completions", Completion("qv", "abc", 5));
            await Until(() => server.Host.Scheduler.PendingCount == 1);
            stopped = server.App.StopAsync(Ct);
            await Task.Delay(100, Ct);
            Assert.False(inFlight.IsCompleted, "the request was dropped when the server began to stop");
        }
        var (status, body, _) = await inFlight;
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(5, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        await stopped;
    }

    [Fact]
    public async Task Logprobs_are_the_models_log_softmax_whole_and_streamed()
    {
        await using var server = await Start(new ServeOptions(Slots: 2, MaxStepTokens: 32, MaxRank: 8));
        string body = """{"model": "qv", "prompt": "bad", "max_tokens": 6, "temperature": 0, "logprobs": 3}""";
        var (status, whole, _) = await server.Send(HttpMethod.Post, "/v1/completions", body);
        Assert.Equal(HttpStatusCode.OK, status);
        var choice = whole.GetProperty("choices")[0];
        var logprobs = choice.GetProperty("logprobs");
        string[] tokens = logprobs.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!).ToArray();
        float[] chosen = logprobs.GetProperty("token_logprobs").EnumerateArray().Select(t => t.GetSingle()).ToArray();
        Assert.Equal(6, tokens.Length);
        Assert.Equal(choice.GetProperty("text").GetString(), string.Concat(tokens));
        Assert.Equal(Enumerable.Range(0, 6).Select(i => string.Concat(tokens[..i]).Length), logprobs.GetProperty("text_offset").EnumerateArray().Select(o => o.GetInt32()));
        // The first token's: the log-softmax, in float64, of the logits a plain forward pass gives after the prompt.
        var logits = new float[Tokenizer.VocabularySize];
        server.Host.Engine.Forward(Tokenizer.Encode("bad"), logits, "qv");
        double max = logits.Max(), logSum = max + Math.Log(logits.Sum(l => Math.Exp(l - max)));
        var expected = logits.Select((l, id) => (Id: id, Logprob: l - logSum)).OrderByDescending(e => e.Logprob).Take(3).ToArray();
        var top = logprobs.GetProperty("top_logprobs")[0].EnumerateObject().ToArray();
        Assert.Equal(expected.Select(e => Tokenizer.Decode([e.Id])), top.Select(p => p.Name));
        for (int i = 0; i < 3; i++) Assert.Equal(expected[i].Logprob, top[i].Value.GetDouble(), 1e-4);
        Assert.Equal(expected[0].Logprob, chosen[0], 1e-4); // greedy: the most likely token
        // Streamed: each chunk carries its token's, and they are the whole answer's.
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = new StringContent(body.Replace("\"logprobs\": 3", "\"logprobs\": 3, \"stream\": true"), Encoding.UTF8, "application/json"),
        };
        using var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, Ct);
        string events = await response.Content.ReadAsStringAsync(Ct);
        var streamed = events.Split('\n').Where(l => l.StartsWith("data: {", StringComparison.Ordinal))
            .Select(l => JsonDocument.Parse(l[6..]).RootElement.GetProperty("choices")[0])
            .Where(c => c.GetProperty("logprobs").ValueKind == JsonValueKind.Object)
            .Select(c => c.GetProperty("logprobs").GetProperty("token_logprobs")[0].GetSingle()).ToArray();
        Assert.Equal(chosen, streamed);
        // Out of range: a 400 naming the field.
        var (bad, error, _) = await server.Send(HttpMethod.Post, "/v1/completions", body.Replace("\"logprobs\": 3", "\"logprobs\": 21"));
        Assert.Equal(HttpStatusCode.BadRequest, bad);
        Assert.Equal("logprobs", error.GetProperty("error").GetProperty("param").GetString());
    }
}

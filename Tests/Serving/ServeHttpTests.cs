using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using LoraRuntime.Cli.Serve;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Serving;
using LoraRuntime.Layers.Text;
using Microsoft.AspNetCore.Builder;
using Xunit;

namespace LoraRuntime.Tests.Serving;

/// <summary>Runs alone: the load test measures the managed heap, which is process-wide, and other tests allocate.</summary>
[CollectionDefinition(nameof(ServeHttpCollection), DisableParallelization = true)]
public sealed class ServeHttpCollection;

/// <summary><c>lora serve</c>'s HTTP API in process on a free loopback port: endpoints, errors, and a bounded load test.</summary>
[Collection(nameof(ServeHttpCollection))]
public sealed class ServeHttpTests : IAsyncLifetime
{
    private static readonly CharTokenizer Tokenizer = new("abcdefghijklm");
    private readonly ServingFixture _f = new();
    private ServingHost _host = null!;
    private WebApplication _app = null!;
    private HttpClient _http = null!;
    private readonly ITestOutputHelper _output;

    public ServeHttpTests(ITestOutputHelper output) => _output = output;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        string modelDir = Path.Combine(_f.Root, "model");
        GptFiles.Save(_f.Served, Tokenizer, modelDir);
        _host = ServingHost.Open(_f.Backend, modelDir, [("qv", _f.AdapterDirectory("qv")), ("all", _f.AdapterDirectory("all"))],
            new ServeOptions(Slots: 4, MaxStepTokens: 32, MaxRank: 8, AdapterBudgetBytes: 1 << 20, AllowAdapterLoading: true, AdapterRoot: _f.Root));
        _app = ServeApi.Build(_host, "http://127.0.0.1:0");
        await _app.StartAsync(Ct);
        _http = new HttpClient { BaseAddress = new Uri(_app.Urls.Single()), Timeout = TimeSpan.FromSeconds(30) };
    }

    public async ValueTask DisposeAsync()
    {
        _http.Dispose();
        await _app.StopAsync(CancellationToken.None);
        await _app.DisposeAsync();
        _host.Dispose();
        _f.Dispose();
    }

    private async Task<(HttpStatusCode Status, JsonElement Body)> Send(HttpMethod method, string path, string? json = null, string contentType = "application/json")
    {
        using var request = new HttpRequestMessage(method, path);
        if (json is not null) request.Content = new StringContent(json, Encoding.UTF8, contentType);
        using var response = await _http.SendAsync(request, Ct);
        var text = await response.Content.ReadAsStringAsync(Ct);
        return (response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    private static string Completion(string model, string prompt, int maxTokens, double temperature = 0, ulong seed = 1, string stop = "null") =>
        $$"""{"model": "{{model}}", "prompt": "{{prompt}}", "max_tokens": {{maxTokens}}, "temperature": {{temperature}}, "top_k": 0, "top_p": 1, "seed": {{seed}}, "stop": {{stop}}}""";

    [Fact]
    public async Task Serves_health_models_completions_and_metrics()
    {
        var (status, health) = await Send(HttpMethod.Get, "/health");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("ok", health.GetProperty("status").GetString());
        var (_, models) = await Send(HttpMethod.Get, "/v1/models");
        Assert.Equal(["base", "all", "qv"], models.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()));
        // The HTTP answer is what the scheduler gives the same request directly.
        var direct = await _host.Scheduler.SubmitAsync(new CompletionRequest { Adapter = "qv", Prompt = Tokenizer.Encode("abc"), MaxTokens = 6 }, Ct);
        var (ok, completion) = await Send(HttpMethod.Post, "/v1/completions", Completion("qv", "abc", 6));
        Assert.Equal(HttpStatusCode.OK, ok);
        var choice = completion.GetProperty("choices")[0];
        Assert.Equal(direct.Text, choice.GetProperty("text").GetString());
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(9, completion.GetProperty("usage").GetProperty("total_tokens").GetInt32());
        string stop = direct.Text.Substring(2, 2);
        var (_, stopped) = await Send(HttpMethod.Post, "/v1/completions", Completion("qv", "abc", 6, stop: $"[\"{stop}\"]"));
        Assert.Equal(direct.Text[..direct.Text.IndexOf(stop, StringComparison.Ordinal)], stopped.GetProperty("choices")[0].GetProperty("text").GetString());
        var (_, metrics) = await Send(HttpMethod.Get, "/stats");
        Assert.True(metrics.GetProperty("requests").GetInt64() >= 3);
        Assert.True(metrics.GetProperty("generated_tokens").GetInt64() > 0);
        Assert.True(metrics.GetProperty("pool").GetProperty("bytes_in_use").GetInt64() > 0);
        Assert.True(metrics.GetProperty("latency_ms").GetProperty("p99").GetDouble() > 0);

        // /metrics is Prometheus' text format: requests and tokens by adapter, the latency histograms, the gauges.
        using var scrape = await _http.GetAsync("/metrics", Ct);
        Assert.Equal(HttpStatusCode.OK, scrape.StatusCode);
        Assert.StartsWith("text/plain", scrape.Content.Headers.ContentType!.ToString());
        string text = await scrape.Content.ReadAsStringAsync(Ct);
        double Sample(string metric, params string[] labels)
        {
            var line = text.Split('\n').FirstOrDefault(l => l.StartsWith(metric + "{", StringComparison.Ordinal) && labels.All(l.Contains));
            Assert.True(line is not null, $"no series {metric} with {string.Join(", ", labels)} in:\n{text}");
            return double.Parse(line[(line.LastIndexOf('}') + 2)..].Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
        }
        Assert.Contains("# TYPE lora_requests_total counter", text);
        const string qv = "adapter=\"qv\"";
        Assert.True(Sample("lora_requests_total", qv, "outcome=\"completed\"") >= 3);
        Assert.True(Sample("lora_generated_tokens_total", qv) >= 12);
        Assert.True(Sample("lora_prompt_tokens_total", qv) >= 9);
        Assert.True(Sample("lora_time_to_first_token_seconds_count", qv) >= 3);
        Assert.True(Sample("lora_inter_token_latency_seconds_count", qv) >= 5);
        Assert.True(Sample("lora_time_to_first_token_seconds_bucket", qv, "le=\"+Inf\"") >= 3);
        Assert.True(Sample("lora_request_duration_seconds_bucket", qv, "le=\"60\"") >= 3);
        foreach (string gauge in new[] { "lora_queue_depth", "lora_sequences_running", "lora_kv_cache_usage", "lora_adapters_loaded", "lora_adapter_bank_usage" })
            Assert.Contains("# TYPE " + gauge, text);
    }

    [Theory]
    [InlineData("{\"model\": \"qv\", \"prompt\": ", HttpStatusCode.BadRequest, null)]
    [InlineData("[1, 2]", HttpStatusCode.BadRequest, null)]
    [InlineData("{\"model\": \"nope\", \"prompt\": \"abc\"}", HttpStatusCode.NotFound, "model")]
    [InlineData("{\"model\": \"base\", \"prompt\": \"abcdefghijklmabcdefghijklm\"}", HttpStatusCode.BadRequest, "prompt")]
    [InlineData("{\"model\": \"base\", \"prompt\": \"xyz\"}", HttpStatusCode.BadRequest, "prompt")]
    [InlineData("{\"model\": \"base\", \"prompt\": \"abc\", \"max_tokens\": 0}", HttpStatusCode.BadRequest, "max_tokens")]
    [InlineData("{\"model\": \"base\", \"prompt\": \"abc\", \"top_p\": 1.5}", HttpStatusCode.BadRequest, "top_p")]
    [InlineData("{\"model\": \"base\", \"prompt\": \"abc\", \"stop\": 3}", HttpStatusCode.BadRequest, "stop")]
    [InlineData("{\"prompt\": \"abc\"}", HttpStatusCode.BadRequest, "model")]
    public async Task Bad_completion_requests_get_a_4xx_with_a_json_error(string body, HttpStatusCode expected, string? param)
    {
        var (status, error) = await Send(HttpMethod.Post, "/v1/completions", body);
        Assert.Equal(expected, status);
        Assert.False(string.IsNullOrEmpty(error.GetProperty("error").GetProperty("message").GetString()));
        if (param is not null) Assert.Equal(param, error.GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task Adapters_load_and_unload_at_run_time()
    {
        var (wrongType, _) = await Send(HttpMethod.Post, "/adapters", "name=x", "text/plain");
        Assert.Equal(HttpStatusCode.BadRequest, wrongType);
        string path = JsonSerializer.Serialize("mlp"); // inside the adapter root
        var (created, info) = await Send(HttpMethod.Post, "/adapters", $"{{\"name\": \"mlp\", \"path\": {path}}}");
        Assert.Equal(HttpStatusCode.Created, created);
        Assert.Equal(3, info.GetProperty("max_rank").GetInt32());
        var (conflict, _) = await Send(HttpMethod.Post, "/adapters", $"{{\"name\": \"mlp\", \"path\": {path}}}");
        Assert.Equal(HttpStatusCode.Conflict, conflict);
        var (missing, _) = await Send(HttpMethod.Post, "/adapters", "{\"name\": \"x\", \"path\": \"nonexistent/adapter\"}");
        Assert.Equal(HttpStatusCode.BadRequest, missing);
        var (outside, _) = await Send(HttpMethod.Post, "/adapters", "{\"name\": \"x\", \"path\": \"/nonexistent/adapter\"}");
        Assert.Equal(HttpStatusCode.BadRequest, outside);
        var (ok, _) = await Send(HttpMethod.Post, "/v1/completions", Completion("mlp", "m", 3));
        Assert.Equal(HttpStatusCode.OK, ok);
        var (deleted, _) = await Send(HttpMethod.Delete, "/adapters/mlp");
        Assert.Equal(HttpStatusCode.OK, deleted);
        var (gone, _) = await Send(HttpMethod.Delete, "/adapters/mlp");
        Assert.Equal(HttpStatusCode.NotFound, gone);
        var (unknown, _) = await Send(HttpMethod.Post, "/v1/completions", Completion("mlp", "m", 3));
        Assert.Equal(HttpStatusCode.NotFound, unknown);
    }

    [Fact]
    public async Task A_bounded_load_test_loses_and_crosses_nothing_and_keeps_memory_flat()
    {
        const int clients = 8, perClient = 8;
        string[] models = ["base", "qv", "all"];
        (string Model, string Prompt, double Temperature, ulong Seed) Case(int c, int r) =>
            (models[(c + r) % 3], new string(Enumerable.Range(0, 1 + (c * 7 + r) % 9).Select(i => (char)('a' + (c + 3 * r + i) % 13)).ToArray()), r % 2 * 0.9, (ulong)(c * 100 + r));
        // What each request must get, computed one by one through the scheduler.
        var expected = new Dictionary<(int, int), string>();
        for (int c = 0; c < clients; c++)
            for (int r = 0; r < perClient; r++)
            {
                var (model, prompt, temperature, seed) = Case(c, r);
                var result = await _host.Scheduler.SubmitAsync(new CompletionRequest
                {
                    Adapter = model == "base" ? null : model, Prompt = Tokenizer.Encode(prompt), MaxTokens = 8,
                    Sampling = new SamplingOptions((float)temperature, 0, seed),
                }, Ct);
                expected[(c, r)] = result.Text;
            }
        async Task<double[]> Client(int c)
        {
            var latencies = new double[perClient];
            for (int r = 0; r < perClient; r++)
            {
                var (model, prompt, temperature, seed) = Case(c, r);
                long start = Stopwatch.GetTimestamp();
                var (status, body) = await Send(HttpMethod.Post, "/v1/completions", Completion(model, prompt, 8, temperature, seed));
                latencies[r] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                Assert.Equal(HttpStatusCode.OK, status);
                Assert.Equal(model, body.GetProperty("model").GetString());
                Assert.Equal(expected[(c, r)], body.GetProperty("choices")[0].GetProperty("text").GetString());
            }
            return latencies;
        }
        await Task.WhenAll(Enumerable.Range(0, clients).Select(Client)).WaitAsync(TimeSpan.FromSeconds(60), Ct); // warm-up round
        var pool = _f.Backend.Pool.Stats;
        long heap = GC.GetTotalMemory(forceFullCollection: true);
        var all = (await Task.WhenAll(Enumerable.Range(0, clients).Select(Client)).WaitAsync(TimeSpan.FromSeconds(60), Ct)).SelectMany(l => l).Order().ToArray();
        long heapAfter = GC.GetTotalMemory(forceFullCollection: true);
        var poolAfter = _f.Backend.Pool.Stats;
        Assert.Equal(pool.BytesInUse, poolAfter.BytesInUse);
        Assert.Equal(pool.BytesReserved, poolAfter.BytesReserved);
        Assert.True(heapAfter - heap < 8 << 20, $"managed heap grew by {heapAfter - heap} bytes over {clients * perClient} requests");
        var (_, metrics) = await Send(HttpMethod.Get, "/stats");
        Assert.Equal(0, metrics.GetProperty("failed").GetInt64());
        _output.WriteLine($"{clients} clients × {perClient} requests: p50 {ServingMetrics.Percentile(all, 0.5):0.0} ms, p99 {ServingMetrics.Percentile(all, 0.99):0.0} ms, " +
            $"heap Δ {heapAfter - heap} bytes, pool in use {poolAfter.BytesInUse} bytes (unchanged), mean batch {metrics.GetProperty("mean_batch_rows").GetDouble():0.00} rows");
    }
}

using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using LoraRuntime.Cli.Serve;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Layers.Serving;
using LoraRuntime.Layers.Text;

namespace LoraRuntime.Cli.Bench;

/// <summary>The server and the load of <c>lora bench http</c>.</summary>
/// <param name="Config">The GPT (random weights; a character vocabulary of V printable characters).</param>
/// <param name="Adapters">Adapters served beside the base (rank <paramref name="Rank"/> on q, k, v, o).</param>
/// <param name="Rank">R of every adapter.</param>
/// <param name="Clients">Concurrent clients.</param>
/// <param name="Requests">Streamed requests per client, one after another.</param>
/// <param name="PromptTokens">Characters (tokens) of each prompt.</param>
/// <param name="MaxTokens">Tokens each request generates.</param>
/// <param name="Slots">Requests decoded together.</param>
/// <param name="MaxQueue">Requests that may wait; past it the server answers 429 and the client retries after Retry-After.</param>
/// <param name="DisconnectEvery">Every k-th request leaves mid-stream (after half its tokens); 0: none.</param>
internal sealed record HttpBenchShape(GptConfig Config, int Adapters, int Rank, int Clients, int Requests, int PromptTokens, int MaxTokens, int Slots,
    int MaxQueue, int DisconnectEvery);

/// <summary>What <c>lora bench http</c> measured, as JSON.</summary>
/// <param name="Device">The backend's name.</param>
/// <param name="Shape">[L, NH, C, V, T] of the model.</param>
/// <param name="Clients">Concurrent clients.</param>
/// <param name="Requests">Streamed requests sent (answered or left on purpose).</param>
/// <param name="Completed">Streams read to <c>data: [DONE]</c>.</param>
/// <param name="Disconnected">Streams the client left mid-way on purpose.</param>
/// <param name="Rejected">429 answers (each retried).</param>
/// <param name="Errors">Anything else: a non-2xx other than 429, a broken stream, an error event.</param>
/// <param name="Mismatches">Completed streams whose text differs from the same request answered whole afterwards (crossed or lost tokens).</param>
/// <param name="Tokens">Tokens streamed to the clients.</param>
/// <param name="Seconds">Wall time of the load.</param>
/// <param name="TokensPerSecond">Tokens streamed per second of load.</param>
/// <param name="TtftP50Ms">Time to the first token's event, from sending the request: median.</param>
/// <param name="TtftP99Ms">99th percentile.</param>
/// <param name="ItlP50Ms">Time between a stream's successive token events: median.</param>
/// <param name="ItlP99Ms">99th percentile.</param>
/// <param name="RssWarmBytes">The process's resident memory after the warm-up round.</param>
/// <param name="RssEndBytes">After the load.</param>
/// <param name="ActiveAfter">Requests still in a slot once every client is done (0: every disconnect freed its slot).</param>
internal sealed record HttpBenchRecord(string Device, int[] Shape, int Clients, int Requests, int Completed, int Disconnected, int Rejected, int Errors,
    int Mismatches, long Tokens, double Seconds, double TokensPerSecond, double TtftP50Ms, double TtftP99Ms, double ItlP50Ms, double ItlP99Ms,
    long RssWarmBytes, long RssEndBytes, int ActiveAfter);

/// <summary>
/// A bounded load on <c>lora serve</c> over loopback: the server runs in this process on a random model with adapters;
/// N clients each stream M completions one after another over the base and the adapters in turn, every k-th leaving
/// mid-stream; a 429 is retried after its Retry-After. Time to first token and inter-token gaps are measured by the
/// clients from the events' arrival. Afterwards every completed stream is asked again whole (same seed): the texts must
/// match, so nothing was lost or crossed between requests.
/// </summary>
internal static class HttpBench
{
    public static HttpBenchRecord Run(Backend backend, HttpBenchShape shape, Action<string> log)
    {
        var config = shape.Config;
        if (shape.PromptTokens + shape.MaxTokens > config.BlockSize)
            throw new UsageException($"--prompt-tokens + --max-tokens: expected at most the context {config.BlockSize}; got {shape.PromptTokens + shape.MaxTokens}");
        var tokenizer = new CharTokenizer(new string(Enumerable.Range(0, config.Vocabulary).Select(i => (char)('!' + i)).ToArray()));
        string root = Path.Combine(Path.GetTempPath(), "lora-bench-http-" + Guid.NewGuid().ToString("N"));
        try
        {
            var adapters = WriteModel(backend, shape, tokenizer, root);
            using var host = ServingHost.Open(backend, Path.Combine(root, "model"), adapters,
                new ServeOptions(Slots: shape.Slots, MaxStepTokens: Math.Max(shape.Slots, 256), MaxRank: shape.Rank, MaxQueue: shape.MaxQueue));
            var app = ServeApi.Build(host, "http://127.0.0.1:0");
            app.StartAsync().GetAwaiter().GetResult();
            try
            {
                using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = shape.Clients + 1 })
                {
                    BaseAddress = new Uri(app.Urls.Single()), Timeout = TimeSpan.FromMinutes(5),
                };
                string[] models = ["base", .. adapters.Select(a => a.Name)];
                var random = new Random(5);
                string Prompt(int c, int r) => new(Enumerable.Range(0, shape.PromptTokens).Select(i => tokenizer.Vocabulary[(c * 131 + r * 17 + i * 7) % config.Vocabulary]).ToArray());
                // Warm-up: one round, not counted.
                Load(http, shape with { Requests = 1, DisconnectEvery = 0 }, models, Prompt, warmup: true).GetAwaiter().GetResult();
                GC.Collect();
                long rssWarm = Environment.WorkingSet;
                log($"warm: RSS {rssWarm >> 20} MiB; {shape.Clients} clients × {shape.Requests} streamed requests of {shape.MaxTokens} tokens over {models.Length} models");
                var watch = Stopwatch.StartNew();
                var outcome = Load(http, shape, models, Prompt, warmup: false).GetAwaiter().GetResult();
                double seconds = watch.Elapsed.TotalSeconds;
                int active = WaitIdle(host);
                GC.Collect();
                long rssEnd = Environment.WorkingSet;
                // Nothing lost or crossed: each completed stream, asked again whole.
                int mismatches = 0;
                foreach (var (model, prompt, seed, text) in outcome.Streams)
                {
                    string body = Body(model, prompt, seed, shape.MaxTokens, stream: false);
                    using var content = new StringContent(body, Encoding.UTF8, "application/json");
                    using var response = http.PostAsync("/v1/completions", content).GetAwaiter().GetResult();
                    using var json = JsonDocument.Parse(response.Content.ReadAsStringAsync().GetAwaiter().GetResult());
                    if (json.RootElement.GetProperty("choices")[0].GetProperty("text").GetString() != text) mismatches++;
                }
                var ttft = outcome.Ttft.Order().ToArray();
                var itl = outcome.Itl.Order().ToArray();
                return new HttpBenchRecord(backend.Name, [config.Layers, config.Heads, config.Channels, config.Vocabulary, config.BlockSize], shape.Clients,
                    shape.Clients * shape.Requests, outcome.Streams.Count, outcome.Disconnected, outcome.Rejected, outcome.Errors, mismatches, outcome.Tokens,
                    seconds, outcome.Tokens / seconds, ServingMetrics.Percentile(ttft, 0.5), ServingMetrics.Percentile(ttft, 0.99),
                    ServingMetrics.Percentile(itl, 0.5), ServingMetrics.Percentile(itl, 0.99), rssWarm, rssEnd, active);
            }
            finally
            {
                app.StopAsync().GetAwaiter().GetResult();
                app.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        }
    }

    private static int WaitIdle(ServingHost host)
    {
        for (int i = 0; i < 200 && host.Scheduler.ActiveCount > 0; i++) Thread.Sleep(10);
        return host.Scheduler.ActiveCount;
    }

    private static List<(string Name, string Directory)> WriteModel(Backend backend, HttpBenchShape shape, CharTokenizer tokenizer, string root)
    {
        var adapters = new List<(string, string)>();
        using var model = new GptModel(backend, shape.Config, maxBatch: 1, training: false, trainParameters: false);
        model.Initialize(7, scaleResidual: true);
        GptFiles.Save(model, tokenizer, Path.Combine(root, "model"));
        using var lora = new LoraModel(model);
        for (int a = 0; a < shape.Adapters; a++)
        {
            var config = new LoraConfig
            {
                TargetModules = ["q", "k", "v", "o"], Defaults = new LoraOptions { Rank = shape.Rank, Alpha = shape.Rank, Init = LoraInit.Random, Seed = (ulong)a + 1 },
            };
            var adapter = lora.AddAdapter("a" + a, config);
            foreach (var w in adapter.Modules) backend.Scale(w.B.Value, w.B.Value, 0.05f);
            string dir = Path.Combine(root, "a" + a);
            PeftAdapterFiles.Save(adapter, config, dir, "random");
            adapters.Add(("a" + a, dir));
        }
        return adapters;
    }

    private static string Body(string model, string prompt, ulong seed, int maxTokens, bool stream) =>
        JsonSerializer.Serialize(new CompletionBody
        {
            Model = model, Prompt = prompt, MaxTokens = maxTokens, Temperature = 0.8f, Seed = seed, Stream = stream, IgnoreEos = true,
        }, ServeJsonContext.Default.CompletionBody);

    private sealed class Outcome
    {
        public readonly List<(string Model, string Prompt, ulong Seed, string Text)> Streams = [];
        public readonly List<double> Ttft = [], Itl = [];
        public int Disconnected, Rejected, Errors;
        public long Tokens;
    }

    private static async Task<Outcome> Load(HttpClient http, HttpBenchShape shape, string[] models, Func<int, int, string> prompt, bool warmup)
    {
        var outcome = new Outcome();
        await Task.WhenAll(Enumerable.Range(0, shape.Clients).Select(c => Task.Run(async () =>
        {
            for (int r = 0; r < shape.Requests; r++)
            {
                int index = c * shape.Requests + r;
                string model = models[index % models.Length];
                ulong seed = (ulong)(warmup ? 1_000_000 + index : index);
                bool leave = shape.DisconnectEvery > 0 && index % shape.DisconnectEvery == shape.DisconnectEvery - 1;
                await Stream(http, model, prompt(c, r), seed, shape.MaxTokens, leave, outcome);
            }
        })));
        return outcome;
    }

    private static async Task Stream(HttpClient http, string model, string prompt, ulong seed, int maxTokens, bool leave, Outcome outcome)
    {
        while (true)
        {
            long sent = Stopwatch.GetTimestamp();
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
            {
                Content = new StringContent(Body(model, prompt, seed, maxTokens, stream: true), Encoding.UTF8, "application/json"),
            };
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            if (response.StatusCode == HttpStatusCode.TooManyRequests)
            {
                lock (outcome) outcome.Rejected++;
                await Task.Delay(response.Headers.RetryAfter?.Delta ?? TimeSpan.FromSeconds(1));
                continue;
            }
            if (!response.IsSuccessStatusCode)
            {
                lock (outcome) outcome.Errors++;
                return;
            }
            var text = new StringBuilder();
            var gaps = new List<double>();
            double ttft = -1;
            long last = 0;
            int tokens = 0;
            bool done = false;
            using (var reader = new StreamReader(await response.Content.ReadAsStreamAsync()))
                for (string? line; (line = await reader.ReadLineAsync()) is not null;)
                {
                    if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
                    if (line == "data: [DONE]")
                    {
                        done = true;
                        break;
                    }
                    using var chunk = JsonDocument.Parse(line.AsMemory(6));
                    if (chunk.RootElement.TryGetProperty("error", out _)) break;
                    var choice = chunk.RootElement.GetProperty("choices")[0];
                    text.Append(choice.GetProperty("text").GetString());
                    if (choice.GetProperty("finish_reason").ValueKind != JsonValueKind.Null) continue; // the closing chunk carries no new token
                    long now = Stopwatch.GetTimestamp();
                    if (tokens == 0) ttft = Stopwatch.GetElapsedTime(sent, now).TotalMilliseconds;
                    else gaps.Add(Stopwatch.GetElapsedTime(last, now).TotalMilliseconds);
                    last = now;
                    tokens++;
                    if (leave && tokens >= maxTokens / 2) break; // the client goes away; disposing the response closes the stream
                }
            lock (outcome)
            {
                outcome.Tokens += tokens;
                if (ttft >= 0) outcome.Ttft.Add(ttft);
                outcome.Itl.AddRange(gaps);
                if (leave) outcome.Disconnected++;
                else if (done) outcome.Streams.Add((model, prompt, seed, text.ToString()));
                else outcome.Errors++;
            }
            return;
        }
    }
}

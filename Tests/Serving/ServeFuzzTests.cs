using System.Net;
using System.Text;
using System.Text.Json;
using LoraRuntime.Cli.Serve;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Text;
using Xunit;

namespace LoraRuntime.Tests.Serving;

/// <summary>
/// Malformed bodies and headers against every endpoint that reads a body: truncated, byte-flipped and spliced JSON,
/// values of the wrong type or out of range, deep nesting, invalid UTF-8, wrong or missing content types. Each gets a
/// 4xx with a JSON error (or, where the mutation happens to stay valid, a 2xx) — never a 500, and never a hang.
/// </summary>
public sealed class ServeFuzzTests : IAsyncLifetime
{
    private static readonly CharTokenizer Tokenizer = new("abcdefghijklm :\n");
    private readonly ServingFixture _f = new();
    private TestServer _server = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        string modelDir = Path.Combine(_f.Root, "model");
        // The fixture's model over a vocabulary that can spell the plain chat template ("user: …", "assistant:").
        var config = ServingFixture.Config with { Vocabulary = Tokenizer.VocabularySize };
        using (var model = new GptModel(_f.Backend, config, maxBatch: 1, training: false, trainParameters: false))
        {
            model.Initialize(9);
            GptFiles.Save(model, Tokenizer, modelDir);
        }
        _server = await TestServer.StartAsync(
            ServingHost.Open(_f.Backend, modelDir, [], new ServeOptions(Slots: 4, MaxStepTokens: 32, MaxRank: 8, AllowAdapterLoading: true, AdapterRoot: _f.Root)), 20);
    }

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        _f.Dispose();
    }

    private static readonly (string Path, string Body)[] Seeds =
    [
        ("/v1/completions", """{"model": "base", "prompt": "abc", "max_tokens": 4, "temperature": 0.5, "top_p": 0.9, "top_k": 3, "seed": 1, "stop": ["m"], "n": 2, "logprobs": 2}"""),
        ("/v1/completions", """{"model": "base", "prompt": "cab", "max_tokens": 3, "stream": true, "stream_options": {"include_usage": true}}"""),
        ("/v1/chat/completions", """{"model": "base", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "text", "text": "ab"}]}], "max_tokens": 3, "logprobs": true, "top_logprobs": 2}"""),
        ("/v1/chat/completions", """{"model": "base", "messages": [{"role": "user", "content": "a"}], "max_tokens": 2, "stream": true, "n": 2}"""),
        ("/adapters", """{"name": "x", "path": "qv"}"""),
    ];

    private static readonly string[] Values =
    [
        "null", "true", "-1", "0", "1e30", "-1e30", "3.5", "18446744073709551616", "\"\"", "\"x\"", "[]", "{}", "[1, \"a\"]", "{\"a\": []}",
        "\"\\ud800\"", new string('[', 200) + new string(']', 200), "\"" + new string('a', 5000) + "\"",
    ];

    [Fact]
    public async Task Malformed_requests_get_a_4xx_with_a_json_error_never_a_500_or_a_hang()
    {
        var random = new Random(20261206);
        var statuses = new Dictionary<int, int>();
        for (int round = 0; round < 240; round++)
        {
            var (path, seed) = Seeds[round % Seeds.Length];
            byte[] body = Mutate(random, seed, round / Seeds.Length % 5);
            string contentType = (round % 17) switch { 0 => "text/plain", 1 => "application/x-www-form-urlencoded", 2 => "", _ => "application/json" };
            using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new ByteArrayContent(body) };
            if (contentType.Length > 0) request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue(contentType);
            switch (round % 23)
            {
                case 5: request.Headers.TryAddWithoutValidation("Authorization", "Basic Zm9vOmJhcg=="); break;
                case 6: request.Headers.TryAddWithoutValidation("Accept", "text/event-stream;q=abc, */*;;"); break;
                case 7: request.Headers.TryAddWithoutValidation("X-Padding", new string('x', 8000)); break;
                case 8: request.Content.Headers.TryAddWithoutValidation("Content-Encoding", "gzip"); break;
            }
            using var response = await _server.Http.SendAsync(request, Ct);
            int status = (int)response.StatusCode;
            statuses[status] = statuses.GetValueOrDefault(status) + 1;
            string text = await response.Content.ReadAsStringAsync(Ct);
            string shown = Encoding.UTF8.GetString(body[..Math.Min(body.Length, 300)]);
            Assert.True(status < 500, $"{path} {contentType} '{shown}': {status} {text}");
            if (status >= 400)
            {
                using var error = JsonDocument.Parse(text);
                Assert.False(string.IsNullOrEmpty(error.RootElement.GetProperty("error").GetProperty("message").GetString()), $"{path} '{shown}': {text}");
            }
        }
        Assert.True(statuses.Keys.Count(s => s >= 400) >= 2, string.Join(", ", statuses.Select(kv => $"{kv.Key}×{kv.Value}")));
        Assert.True(statuses.ContainsKey(200) || statuses.ContainsKey(201), "no mutation stayed valid: the seeds themselves are wrong");
        // And the server still answers.
        using var ok = new StringContent("""{"model": "base", "prompt": "abc", "max_tokens": 2}""", Encoding.UTF8, "application/json");
        Assert.Equal(HttpStatusCode.OK, (await _server.Http.PostAsync("/v1/completions", ok, Ct)).StatusCode);
        Assert.Equal(0, _server.Host.Scheduler.ActiveCount);
    }

    /// <summary>One of five mutations of a valid body: as is, truncated, bytes flipped, a value replaced, a fragment spliced.</summary>
    private static byte[] Mutate(Random random, string seed, int kind)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(seed);
        switch (kind)
        {
            case 0:
                return bytes;
            case 1:
                return bytes[..random.Next(bytes.Length)];
            case 2:
                for (int i = 0, n = 1 + random.Next(4); i < n; i++) bytes[random.Next(bytes.Length)] = (byte)random.Next(256);
                return bytes;
            case 3:
            {
                // Replace the value after a random key by a value of another type or range.
                var keys = System.Text.RegularExpressions.Regex.Matches(seed, "\"[a-z_]+\": ").ToArray();
                var key = keys[random.Next(keys.Length)];
                int start = key.Index + key.Length, end = ValueEnd(seed, start);
                return Encoding.UTF8.GetBytes(seed[..start] + Values[random.Next(Values.Length)] + seed[end..]);
            }
            default:
            {
                int at = random.Next(bytes.Length);
                byte[] fragment = Encoding.UTF8.GetBytes(Values[random.Next(Values.Length)] + (random.Next(2) == 0 ? "," : "}"));
                return [.. bytes[..at], .. fragment, .. bytes[at..]];
            }
        }
    }

    /// <summary>Where the JSON value starting at <paramref name="start"/> ends (strings, nesting).</summary>
    private static int ValueEnd(string json, int start)
    {
        int depth = 0;
        bool inString = false;
        for (int i = start; i < json.Length; i++)
        {
            char c = json[i];
            if (inString)
            {
                if (c == '\\') i++;
                else if (c == '"') inString = false;
                if (!inString && depth == 0) return i + 1;
                continue;
            }
            if (c == '"') inString = true;
            else if (c is '[' or '{') depth++;
            else if (c is ']' or '}')
            {
                if (depth == 0) return i;
                if (--depth == 0) return i + 1;
            }
            else if (c == ',' && depth == 0) return i;
        }
        return json.Length;
    }
}

using LoraRuntime.Layers;
using LoraRuntime.Layers.Serving;
using LoraRuntime.Layers.Text;
using Microsoft.AspNetCore.Http;

namespace LoraRuntime.Cli.Serve;

/// <summary>
/// <c>POST /v1/completions</c>: OpenAI's legacy completions — a prompt, <c>n</c> choices, whole or (<c>"stream": true</c>)
/// as server-sent events in its chunk format: a chunk per generated token carrying the text it completes, a last chunk
/// per choice with its finish reason, the usage when <c>stream_options.include_usage</c> asks for it, then
/// <c>data: [DONE]</c>; <c>logprobs</c> in the legacy layout (tokens, token_logprobs, top_logprobs, text_offset).
/// </summary>
internal static class ServeCompletions
{
    private static long _ids;

    public static async Task Complete(HttpContext ctx, ServingHost host)
    {
        var body = await ServeApi.ReadBody(ctx, ServeJsonContext.Default.CompletionBody);
        var (model, adapter) = ServeApi.Model(host, body.Model);
        if (string.IsNullOrEmpty(body.Prompt)) throw new ServeApi.BadRequest("prompt: required, a non-empty string", "prompt");
        int n = ServeGeneration.Choices(body.N);
        int[] prompt;
        try
        {
            prompt = host.Tokenizer.EncodePrompt(body.Prompt);
        }
        catch (ArgumentException e)
        {
            throw new ServeApi.BadRequest("prompt: " + e.Message, "prompt");
        }
        var request = new CompletionRequest
        {
            Adapter = adapter,
            Prompt = prompt,
            MaxTokens = body.MaxTokens ?? 16,
            Sampling = new SamplingOptions(body.Temperature ?? 1f, body.TopK ?? 0, ServeGeneration.Seed(body.Seed)),
            TopP = body.TopP ?? 1f,
            Stop = ServeApi.Stops(body.Stop),
            IgnoreEndOfSequence = body.IgnoreEos ?? false,
            Logprobs = body.Logprobs,
        };
        host.Scheduler.Validate(request); // a bad field is a 400 before anything is queued or streamed
        string id = "cmpl-" + Interlocked.Increment(ref _ids);
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        if (body.Stream == true)
        {
            await ServeGeneration.Stream(ctx, host, request, n, body.StreamOptions?.IncludeUsage == true, new Events(ctx, host, request, id, created, model));
            return;
        }
        var results = await ServeGeneration.Whole(ctx, host, request, n);
        var choices = results.Select((r, i) => new CompletionChoice(i, r.Text, r.FinishReason, Logprobs(host.Tokenizer, r.Tokens, r.Logprobs, 0, r.Text.Length))).ToArray();
        await ServeApi.Write(ctx, 200, new CompletionResponse(id, "text_completion", created, model, choices, ServeGeneration.Usage(results)),
            ServeJsonContext.Default.CompletionResponse);
    }

    private sealed class Events(HttpContext ctx, ServingHost host, CompletionRequest request, string id, long created, string model) : ServeGeneration.IEvents
    {
        public Task Token(int choice, string text, GeneratedToken token, int offset)
        {
            var logprobs = request.Logprobs is null ? null : Logprobs(host.Tokenizer, [token.Id],
                new TokenLogprobs([token.Logprob], token.TopIds.ToArray(), token.TopLogprobs.ToArray(), token.TopIds.Length), offset, int.MaxValue);
            return Chunk([new CompletionChunkChoice(choice, text, null, logprobs)], null);
        }

        public Task End(int choice, string rest, CompletionResult result) => Chunk([new CompletionChunkChoice(choice, rest, result.FinishReason)], null);

        public Task Usage(CompletionResult[] results) => Chunk([], ServeGeneration.Usage(results));

        private Task Chunk(CompletionChunkChoice[] choices, CompletionUsage? usage) =>
            ServeGeneration.Event(ctx, new CompletionChunk(id, "text_completion", created, model, choices, usage), ServeJsonContext.Default.CompletionChunk);
    }

    /// <summary>
    /// The legacy format of <paramref name="logprobs"/> for <paramref name="ids"/>: each token's own text, its
    /// log-probability, its alternatives by text (the likelier kept where two decode alike) and its offset in the answer
    /// from <paramref name="start"/> (capped at <paramref name="end"/>, where a stop string cut the text).
    /// </summary>
    internal static CompletionLogprobs? Logprobs(ITokenizer tokenizer, int[] ids, TokenLogprobs? logprobs, int start, int end)
    {
        if (logprobs is null) return null;
        int n = ids.Length, top = logprobs.TopCount;
        var tokens = new string[n];
        var alternatives = new Dictionary<string, float>[n];
        var offsets = new int[n];
        int at = start;
        for (int i = 0; i < n; i++)
        {
            tokens[i] = ActiveSequence.DecodeKnown(tokenizer, ids.AsSpan(i, 1));
            offsets[i] = Math.Min(at, end);
            at += tokens[i].Length;
            alternatives[i] = new Dictionary<string, float>(top, StringComparer.Ordinal);
            for (int j = 0; j < top; j++)
                alternatives[i].TryAdd(ActiveSequence.DecodeKnown(tokenizer, logprobs.TopIds.AsSpan(i * top + j, 1)), logprobs.TopLogprobs[i * top + j]);
        }
        return new CompletionLogprobs(tokens, logprobs.Chosen[..n], alternatives, offsets);
    }
}

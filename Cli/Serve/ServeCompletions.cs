using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Serving;
using LoraRuntime.Layers.Text;
using Microsoft.AspNetCore.Http;

namespace LoraRuntime.Cli.Serve;

/// <summary>
/// <c>POST /v1/completions</c>: a whole answer, or (<c>"stream": true</c>) server-sent events in OpenAI's chunk format —
/// a chunk per generated token carrying the text it completes, a last chunk with the finish reason, the usage when
/// <c>stream_options.include_usage</c> asks for it, then <c>data: [DONE]</c>. Text that could still turn out to be part
/// of a stop string, or half of a character, is held back until it cannot, so the chunks join to exactly the whole
/// answer. A client that goes away cancels its request at once (its slot is freed before the next step); a request
/// past its deadline is cancelled and answered 504 (an error event when streaming).
/// </summary>
internal static class ServeCompletions
{
    private static long _ids, _seeds;

    public static async Task Complete(HttpContext ctx, ServingHost host)
    {
        ServeApi.RequireJson(ctx);
        var body = await ctx.Request.ReadFromJsonAsync(ServeJsonContext.Default.CompletionBody, ctx.RequestAborted);
        if (body is null) throw new ServeApi.BadRequest("the body must be a JSON object", null);
        string model = body.Model ?? throw new ServeApi.BadRequest("model: required (an adapter's name, or the base model's)", "model");
        string? adapter = model == host.Options.BaseName ? null : model;
        if (adapter is not null && !host.Bank.TryGet(adapter, out _))
        {
            await ServeApi.Error(ctx, 404, $"model: no model '{model}'; GET /v1/models lists them", "not_found", "model");
            return;
        }
        if (string.IsNullOrEmpty(body.Prompt)) throw new ServeApi.BadRequest("prompt: required, a non-empty string", "prompt");
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
            Sampling = new SamplingOptions(body.Temperature ?? 1f, body.TopK ?? 0, body.Seed ?? (ulong)Interlocked.Increment(ref _seeds)),
            TopP = body.TopP ?? 1f,
            Stop = ServeApi.Stops(body.Stop),
            IgnoreEndOfSequence = body.IgnoreEos ?? false,
            Logprobs = body.Logprobs,
        };
        string id = "cmpl-" + Interlocked.Increment(ref _ids);
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        using var deadline = Deadline(ctx, host.Options.RequestTimeout);
        if (body.Stream == true)
        {
            await Stream(ctx, host, request, id, created, model, body.StreamOptions?.IncludeUsage == true, deadline);
            return;
        }
        CompletionResult result;
        try
        {
            result = await host.Scheduler.SubmitAsync(request, deadline.Token);
        }
        catch (OperationCanceledException) when (!ctx.RequestAborted.IsCancellationRequested)
        {
            throw Expired(host);
        }
        var response = new CompletionResponse(id, "text_completion", created, model,
            [new CompletionChoice(0, result.Text, result.FinishReason, Logprobs(host.Tokenizer, result.Tokens, result.Logprobs, 0, result.Text.Length))],
            new CompletionUsage(result.PromptTokens, result.Tokens.Length, result.PromptTokens + result.Tokens.Length));
        await ServeApi.Write(ctx, 200, response, ServeJsonContext.Default.CompletionResponse);
    }

    /// <summary>The client's cancellation, and the server's deadline after it when one is set.</summary>
    private static CancellationTokenSource Deadline(HttpContext ctx, TimeSpan? timeout)
    {
        var source = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted);
        if (timeout is { } t) source.CancelAfter(t);
        return source;
    }

    private static TimeoutException Expired(ServingHost host) =>
        new($"the request passed its deadline of {host.Options.RequestTimeout?.TotalSeconds} s and was cancelled");

    private static async Task Stream(HttpContext ctx, ServingHost host, CompletionRequest request, string id, long created, string model, bool usage,
        CancellationTokenSource deadline)
    {
        var tokens = Channel.CreateUnbounded<GeneratedToken>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        // Queued (or refused: a full queue is a 429) before the response starts.
        var task = host.Scheduler.SubmitAsync(request with { OnToken = t => tokens.Writer.TryWrite(t) }, deadline.Token);
        _ = task.ContinueWith(_ => tokens.Writer.TryComplete(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        var response = ctx.Response;
        response.StatusCode = 200;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        await response.StartAsync(ctx.RequestAborted);
        var text = new StreamedText(host.Tokenizer, request.Stop);
        try
        {
            await foreach (var token in tokens.Reader.ReadAllAsync(ctx.RequestAborted))
            {
                int offset = text.Emitted;
                string piece = text.Add(token.Id);
                var logprobs = request.Logprobs is null ? null : Logprobs(host.Tokenizer, [token.Id],
                    new TokenLogprobs([token.Logprob], token.TopIds.ToArray(), token.TopLogprobs.ToArray(), token.TopIds.Length), offset, int.MaxValue);
                await Event(ctx, Chunk(id, created, model, piece, null, logprobs));
            }
            var result = await task;
            await Event(ctx, Chunk(id, created, model, text.Finish(result.Text), result.FinishReason));
            if (usage)
                await Event(ctx, new CompletionChunk(id, "text_completion", created, model, [],
                    new CompletionUsage(result.PromptTokens, result.Tokens.Length, result.PromptTokens + result.Tokens.Length)));
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            return; // the client left; the scheduler has dropped its request
        }
        catch (Exception e)
        {
            // The status is sent already: the failure is the stream's last event, as OpenAI's streams end on an error.
            string message = e is OperationCanceledException ? Expired(host).Message : e.Message;
            await ServeJsonEvent(ctx, new ErrorResponse(new ErrorDetail(message, e is OperationCanceledException ? "timeout" : "server_error", null)));
        }
        await response.WriteAsync("data: [DONE]\n\n", ctx.RequestAborted);
        await response.Body.FlushAsync(ctx.RequestAborted);
    }

    private static CompletionChunk Chunk(string id, long created, string model, string text, string? finish, CompletionLogprobs? logprobs = null) =>
        new(id, "text_completion", created, model, [new CompletionChunkChoice(0, text, finish, logprobs)], null);

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

    private static async Task Event(HttpContext ctx, CompletionChunk chunk)
    {
        await ctx.Response.WriteAsync("data: ", ctx.RequestAborted);
        await JsonSerializer.SerializeAsync(ctx.Response.Body, chunk, ServeJsonContext.Default.CompletionChunk, ctx.RequestAborted);
        await ctx.Response.WriteAsync("\n\n", ctx.RequestAborted);
        await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
    }

    private static async Task ServeJsonEvent(HttpContext ctx, ErrorResponse error)
    {
        await ctx.Response.WriteAsync("data: ", ctx.RequestAborted);
        await JsonSerializer.SerializeAsync(ctx.Response.Body, error, ServeJsonContext.Default.ErrorResponse, ctx.RequestAborted);
        await ctx.Response.WriteAsync("\n\n", ctx.RequestAborted);
    }
}

/// <summary>
/// The text of a streamed answer token by token: each call gives what is now certain — the decoded text so far less a
/// trailing half character (U+FFFD) and less what could still be the start of a stop string — so that the pieces join
/// to the whole answer's text.
/// </summary>
internal sealed class StreamedText(ITokenizer tokenizer, IReadOnlyList<string> stops)
{
    private readonly List<int> _ids = [];
    private readonly int _holdBack = stops.Count == 0 ? 0 : stops.Max(s => s.Length) - 1;
    private int _emitted;

    /// <summary>Characters given so far.</summary>
    public int Emitted => _emitted;

    /// <summary>The new certain text after <paramref name="token"/> (possibly empty).</summary>
    public string Add(int token)
    {
        _ids.Add(token);
        string text = ActiveSequence.DecodeKnown(tokenizer, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_ids));
        int safe = text.Length;
        while (safe > 0 && text[safe - 1] == '\uFFFD') safe--;
        safe -= _holdBack;
        foreach (string stop in stops)
        {
            int at = text.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0) safe = Math.Min(safe, at);
        }
        if (safe <= _emitted) return "";
        string piece = text[_emitted..safe];
        _emitted = safe;
        return piece;
    }

    /// <summary>The rest of <paramref name="whole"/>, the answer's text, after what was given.</summary>
    public string Finish(string whole) => whole.Length > _emitted ? whole[_emitted..] : "";
}

using System.Threading.Channels;
using LoraRuntime.Layers.Serving;
using LoraRuntime.Layers.Text;
using Microsoft.AspNetCore.Http;

namespace LoraRuntime.Cli.Serve;

/// <summary>
/// Runs the <c>n</c> choices of one HTTP request through the scheduler — the i-th with seed + i — whole, or streamed as
/// server-sent events: each generated token becomes an event as soon as it is drawn (the choices interleave), then each
/// choice ends with its rest and finish reason. What the events carry is the endpoint's (completions or chat). A client
/// that goes away cancels every choice at once; the request's deadline cancels them and is answered 504 (an error
/// event once streaming).
/// </summary>
internal static class ServeGeneration
{
    /// <summary>The most choices one request may ask for.</summary>
    public const int MaxChoices = 16;

    private static long _seeds;

    /// <summary>The seed of choice 0: the request's, else the next of the server's own sequence.</summary>
    public static ulong Seed(ulong? requested) => requested ?? (ulong)Interlocked.Increment(ref _seeds) * 0x9E3779B97F4A7C15UL;

    /// <summary>The number of choices asked for, checked.</summary>
    public static int Choices(int? n) => n is null ? 1
        : n is >= 1 and <= MaxChoices ? n.Value
        : throw new ServeApi.BadRequest($"n: expected 1 to {MaxChoices} choices; got {n}", "n");

    /// <summary>The client's cancellation, and the server's deadline after it when one is set.</summary>
    public static CancellationTokenSource Deadline(HttpContext ctx, TimeSpan? timeout)
    {
        var source = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted);
        if (timeout is { } t) source.CancelAfter(t);
        return source;
    }

    public static TimeoutException Expired(ServingHost host) =>
        new($"the request passed its deadline of {host.Options.RequestTimeout?.TotalSeconds} s and was cancelled");

    private static CompletionRequest Choice(CompletionRequest request, int i) =>
        i == 0 ? request : request with { Sampling = request.Sampling with { Seed = request.Sampling.Seed + (ulong)i } };

    /// <summary>Every choice's result; a full queue is a <see cref="SchedulerFullException"/>, a deadline a <see cref="TimeoutException"/>.</summary>
    public static async Task<CompletionResult[]> Whole(HttpContext ctx, ServingHost host, CompletionRequest request, int n)
    {
        using var deadline = Deadline(ctx, host.Options.RequestTimeout);
        var tasks = new Task<CompletionResult>[n];
        try
        {
            for (int i = 0; i < n; i++) tasks[i] = host.Scheduler.SubmitAsync(Choice(request, i), deadline.Token);
            return await Task.WhenAll(tasks);
        }
        catch (OperationCanceledException) when (!ctx.RequestAborted.IsCancellationRequested)
        {
            throw Expired(host);
        }
        catch
        {
            deadline.Cancel(); // one choice failed (or the queue filled): the others stop too
            throw;
        }
    }

    /// <summary>What a stream's events say, in the endpoint's format: a token's text (with the token), a choice's end, the usage.</summary>
    public interface IEvents
    {
        Task Token(int choice, string text, GeneratedToken token, int offset);
        Task End(int choice, string rest, CompletionResult result);
        Task Usage(CompletionResult[] results);
    }

    /// <summary>
    /// Streams the choices: the response starts once every choice is queued (a full queue is still a 429), then a token
    /// event per drawn token, an end event per choice, the usage when asked, and <c>data: [DONE]</c>.
    /// </summary>
    public static async Task Stream(HttpContext ctx, ServingHost host, CompletionRequest request, int n, bool usage, IEvents events)
    {
        using var deadline = Deadline(ctx, host.Options.RequestTimeout);
        var tokens = Channel.CreateUnbounded<(int Choice, GeneratedToken Token)>(new UnboundedChannelOptions { SingleReader = true });
        var tasks = new Task<CompletionResult>[n];
        try
        {
            for (int i = 0; i < n; i++)
            {
                int choice = i;
                tasks[i] = host.Scheduler.SubmitAsync(Choice(request, i) with { OnToken = t => tokens.Writer.TryWrite((choice, t)) }, deadline.Token);
            }
        }
        catch
        {
            deadline.Cancel();
            throw;
        }
        _ = Task.WhenAll(tasks).ContinueWith(_ => tokens.Writer.TryComplete(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
        var response = ctx.Response;
        response.StatusCode = 200;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        await response.StartAsync(ctx.RequestAborted);
        var texts = new StreamedText[n];
        for (int i = 0; i < n; i++) texts[i] = new StreamedText(host.Tokenizer, request.Stop);
        try
        {
            await foreach (var (choice, token) in tokens.Reader.ReadAllAsync(ctx.RequestAborted))
            {
                int offset = texts[choice].Emitted;
                await events.Token(choice, texts[choice].Add(token.Id), token, offset);
            }
            var results = await Task.WhenAll(tasks);
            for (int i = 0; i < n; i++) await events.End(i, texts[i].Finish(results[i].Text), results[i]);
            if (usage) await events.Usage(results);
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            return; // the client left; the scheduler has dropped its requests
        }
        catch (Exception e)
        {
            // The status is sent already: the failure is the stream's last event, as OpenAI's streams end on an error.
            deadline.Cancel();
            bool late = e is OperationCanceledException;
            var error = new ErrorResponse(new ErrorDetail(late ? Expired(host).Message : e.Message, late ? "timeout" : "server_error", null));
            await Event(ctx, error, ServeJsonContext.Default.ErrorResponse);
        }
        await response.WriteAsync("data: [DONE]\n\n", ctx.RequestAborted);
        await response.Body.FlushAsync(ctx.RequestAborted);
    }

    /// <summary>One server-sent event: <c>data: JSON</c>, flushed.</summary>
    public static async Task Event<T>(HttpContext ctx, T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type)
    {
        await ctx.Response.WriteAsync("data: ", ctx.RequestAborted);
        await System.Text.Json.JsonSerializer.SerializeAsync(ctx.Response.Body, value, type, ctx.RequestAborted);
        await ctx.Response.WriteAsync("\n\n", ctx.RequestAborted);
        await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
    }

    /// <summary>The usage of every choice together: the prompt once, the completions summed.</summary>
    public static CompletionUsage Usage(CompletionResult[] results)
    {
        int completion = results.Sum(r => r.Tokens.Length);
        return new CompletionUsage(results[0].PromptTokens, completion, results[0].PromptTokens + completion);
    }
}

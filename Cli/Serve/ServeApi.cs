using System.Text.Json;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Serving;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace LoraRuntime.Cli.Serve;

/// <summary>
/// The HTTP API of <c>lora serve</c> on ASP.NET Core's slim builder: OpenAI-style <c>POST /v1/completions</c> and
/// <c>GET /v1/models</c>, <c>POST /adapters</c> and <c>DELETE /adapters/{name}</c>, <c>GET /health</c> and
/// <c>GET /metrics</c>. Handlers are plain <see cref="RequestDelegate"/>s and bodies use source-generated JSON, so the
/// server needs no reflection. Bad JSON, an unknown adapter or an oversize prompt get a 4xx with a JSON error body.
/// </summary>
internal static class ServeApi
{
    /// <summary>The largest request body accepted.</summary>
    public const long MaxBodyBytes = 1 << 20;

    private static long _ids, _seeds;

    /// <summary>A server for <paramref name="host"/> listening on <paramref name="urls"/> (semicolon-separated), not started.</summary>
    public static WebApplication Build(ServingHost host, string urls)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.WebHost.UseUrls(urls);
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = MaxBodyBytes);
        builder.Logging.ClearProviders();
        builder.Services.ConfigureHttpJsonOptions(o => o.SerializerOptions.TypeInfoResolverChain.Insert(0, ServeJsonContext.Default));
        var app = builder.Build();
        Map(app, host);
        return app;
    }

    /// <summary>The endpoints.</summary>
    public static void Map(IEndpointRouteBuilder app, ServingHost host)
    {
        app.MapGet("/health", ctx => Write(ctx, 200, new StatusResponse("ok"), ServeJsonContext.Default.StatusResponse));
        app.MapGet("/v1/models", ctx => Write(ctx, 200, Models(host), ServeJsonContext.Default.ModelList));
        app.MapGet("/metrics", ctx => Write(ctx, 200, Metrics(host), ServeJsonContext.Default.MetricsResponse));
        app.MapPost("/v1/completions", ctx => Guarded(ctx, () => Complete(ctx, host)));
        app.MapPost("/adapters", ctx => Guarded(ctx, () => LoadAdapter(ctx, host)));
        app.MapDelete("/adapters/{name}", ctx => Guarded(ctx, () =>
        {
            string name = (string)ctx.Request.RouteValues["name"]!;
            return host.Bank.Unload(name)
                ? Write(ctx, 200, new StatusResponse("deleted"), ServeJsonContext.Default.StatusResponse)
                : Error(ctx, 404, $"no adapter '{name}' is loaded", "not_found", "name");
        }));
    }

    private static async Task Complete(HttpContext ctx, ServingHost host)
    {
        RequireJson(ctx);
        var body = await ctx.Request.ReadFromJsonAsync(ServeJsonContext.Default.CompletionBody, ctx.RequestAborted);
        if (body is null) throw new BadRequest("the body must be a JSON object", null);
        string model = body.Model ?? throw new BadRequest("model: required (an adapter's name, or the base model's)", "model");
        string? adapter = model == host.Options.BaseName ? null : model;
        if (adapter is not null && !host.Bank.TryGet(adapter, out _))
        {
            await Error(ctx, 404, $"model: no model '{model}'; GET /v1/models lists them", "not_found", "model");
            return;
        }
        if (string.IsNullOrEmpty(body.Prompt)) throw new BadRequest("prompt: required, a non-empty string", "prompt");
        int[] prompt;
        try
        {
            prompt = host.Tokenizer.EncodePrompt(body.Prompt);
        }
        catch (ArgumentException e)
        {
            throw new BadRequest("prompt: " + e.Message, "prompt");
        }
        var request = new CompletionRequest
        {
            Adapter = adapter,
            Prompt = prompt,
            MaxTokens = body.MaxTokens ?? 16,
            Sampling = new SamplingOptions(body.Temperature ?? 1f, body.TopK ?? 0, body.Seed ?? (ulong)Interlocked.Increment(ref _seeds)),
            TopP = body.TopP ?? 1f,
            Stop = Stops(body.Stop),
            IgnoreEndOfSequence = body.IgnoreEos ?? false,
        };
        var result = await host.Scheduler.SubmitAsync(request, ctx.RequestAborted);
        var response = new CompletionResponse("cmpl-" + Interlocked.Increment(ref _ids), "text_completion", DateTimeOffset.UtcNow.ToUnixTimeSeconds(), model,
            [new CompletionChoice(0, result.Text, result.FinishReason)],
            new CompletionUsage(result.PromptTokens, result.Tokens.Length, result.PromptTokens + result.Tokens.Length));
        await Write(ctx, 200, response, ServeJsonContext.Default.CompletionResponse);
    }

    private static async Task LoadAdapter(HttpContext ctx, ServingHost host)
    {
        RequireJson(ctx);
        var body = await ctx.Request.ReadFromJsonAsync(ServeJsonContext.Default.LoadAdapterBody, ctx.RequestAborted);
        if (body?.Name is not { } name) throw new BadRequest("name: required", "name");
        if (body.Path is not { } path) throw new BadRequest("path: required, a PEFT adapter directory on the server", "path");
        if (name == host.Options.BaseName) throw new BadRequest($"name: '{name}' is the base model's name", "name");
        if (host.Bank.TryGet(name, out _))
        {
            await Error(ctx, 409, $"name: an adapter called '{name}' is already loaded; DELETE /adapters/{name} first", "conflict", "name");
            return;
        }
        ServedAdapter adapter;
        try
        {
            adapter = host.Bank.Load(name, path);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            throw new BadRequest("path: " + e.Message, "path");
        }
        await Write(ctx, 201, new AdapterInfo(adapter.Name, adapter.ModuleCount, adapter.MaxRank, adapter.Bytes), ServeJsonContext.Default.AdapterInfo);
    }

    private static void RequireJson(HttpContext ctx)
    {
        if (!ctx.Request.HasJsonContentType())
            throw new BadRequest($"the body must be JSON (Content-Type: application/json); got Content-Type '{ctx.Request.ContentType}'", null);
    }

    private static string[] Stops(JsonElement? stop)
    {
        if (stop is not { } s || s.ValueKind == JsonValueKind.Null) return [];
        if (s.ValueKind == JsonValueKind.String) return [s.GetString()!];
        if (s.ValueKind == JsonValueKind.Array && s.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String))
            return s.EnumerateArray().Select(e => e.GetString()!).ToArray();
        throw new BadRequest("stop: expected a string or an array of strings", "stop");
    }

    private static ModelList Models(ServingHost host)
    {
        var entries = new List<ModelEntry> { new(host.Options.BaseName, "model", "lora-runtime", true) };
        foreach (var name in host.Bank.Names)
            if (host.Bank.TryGet(name, out var a)) entries.Add(new ModelEntry(name, "model", "lora-runtime", a.IsResident));
        return new ModelList("list", [.. entries]);
    }

    private static MetricsResponse Metrics(ServingHost host)
    {
        var m = host.Scheduler.Metrics.Snapshot();
        var p = host.Backend.Pool.Stats;
        var b = host.Bank.Stats;
        return new MetricsResponse(m.Requests, m.Failed, host.Scheduler.ActiveCount, host.Scheduler.PendingCount, m.GeneratedTokens, m.Steps,
            m.TokensPerSecond, m.MeanBatchRows, new LatencyMetrics(m.LatencyP50Ms, m.LatencyP90Ms, m.LatencyP99Ms),
            new PoolMetrics(p.BytesInUse, p.BytesReserved, p.PeakBytesInUse, p.CacheHits, p.CacheMisses),
            new AdapterMetrics(b.Loaded, b.Resident, b.ResidentBytes, b.BudgetBytes, b.Uploads, b.Evictions), GC.GetTotalMemory(false));
    }

    /// <summary>Runs a handler and maps its failures to JSON errors: 400 for bad input, 404 for an adapter gone meanwhile, 500 otherwise.</summary>
    private static async Task Guarded(HttpContext ctx, Func<Task> handler)
    {
        try
        {
            await handler();
        }
        catch (BadRequest e)
        {
            await Error(ctx, 400, e.Message, "invalid_request_error", e.Param);
        }
        catch (JsonException e)
        {
            await Error(ctx, 400, "the body is not valid JSON for this endpoint: " + e.Message, "invalid_request_error", null);
        }
        catch (BadHttpRequestException e)
        {
            await Error(ctx, e.StatusCode, e.Message, "invalid_request_error", null);
        }
        catch (ArgumentException e)
        {
            int status = e.ParamName == "model" ? 404 : 400;
            await Error(ctx, status, e.Message, status == 404 ? "not_found" : "invalid_request_error", e.ParamName);
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            // The client went away; nobody reads a response.
        }
        catch (Exception e) when (!ctx.Response.HasStarted)
        {
            await Error(ctx, 500, e.Message, "server_error", null);
        }
    }

    private static Task Error(HttpContext ctx, int status, string message, string type, string? param) =>
        Write(ctx, status, new ErrorResponse(new ErrorDetail(message, type, param)), ServeJsonContext.Default.ErrorResponse);

    private static Task Write<T>(HttpContext ctx, int status, T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type)
    {
        ctx.Response.StatusCode = status;
        return ctx.Response.WriteAsJsonAsync(value, type, contentType: null, ctx.RequestAborted);
    }

    /// <summary>A request the client got wrong, with the field it names.</summary>
    private sealed class BadRequest(string message, string? param) : Exception(message)
    {
        public string? Param { get; } = param;
    }
}

using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Serving;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Metrics;

namespace LoraRuntime.Cli.Serve;

/// <summary>
/// The HTTP API of <c>lora serve</c> on ASP.NET Core's slim builder: OpenAI-style <c>POST /v1/completions</c> (whole, or
/// streamed as server-sent events) and <c>GET /v1/models</c>, <c>POST /adapters</c> and <c>DELETE /adapters/{name}</c>
/// (only with <see cref="ServeOptions.AllowAdapterLoading"/>, from inside the adapter root), <c>GET /health</c>,
/// <c>GET /metrics</c> (Prometheus text) and <c>GET /stats</c> (JSON); with an API key, every endpoint asks for it. Handlers are plain <see cref="RequestDelegate"/>s and
/// bodies use source-generated JSON, so the server needs no reflection. Bad JSON, an unknown adapter or an oversize
/// prompt get a 4xx with a JSON error body; a full queue a 429 with Retry-After; a request past its deadline a 504.
/// </summary>
internal static class ServeApi
{
    /// <summary>The largest request body accepted.</summary>
    public const long MaxBodyBytes = 1 << 20;


    /// <summary>A server for <paramref name="host"/> listening on <paramref name="urls"/> (semicolon-separated), not started.</summary>
    public static WebApplication Build(ServingHost host, string urls)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.WebHost.UseUrls(urls);
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = MaxBodyBytes);
        builder.Logging.ClearProviders();
        builder.Services.ConfigureHttpJsonOptions(o => o.SerializerOptions.TypeInfoResolverChain.Insert(0, ServeJsonContext.Default));
        // The scheduler's System.Diagnostics.Metrics instruments, scraped fresh each time (no response cache).
        builder.Services.AddOpenTelemetry().WithMetrics(m => m.AddMeter(ServingMeter.Name)
            .AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = 0));
        var app = builder.Build();
        var stopping = app.Lifetime.ApplicationStopping;
        byte[]? key = host.Options.ApiKey is { } k ? SHA256.HashData(Encoding.UTF8.GetBytes(k)) : null;
        app.Use(async (ctx, next) =>
        {
            if (key is not null && !Authorized(ctx, key))
            {
                ctx.Response.Headers.WWWAuthenticate = "Bearer";
                await Error(ctx, 401, "a valid API key is required: Authorization: Bearer KEY", "authentication_error", null);
                return;
            }
            // Shutting down: the requests in flight finish (within the host's shutdown timeout); new ones are turned away.
            if (stopping.IsCancellationRequested)
            {
                ctx.Response.Headers.RetryAfter = "1";
                await Error(ctx, 503, "the server is shutting down", "server_unavailable", null);
                return;
            }
            await next(ctx);
        });
        Map(app, host);
        return app;
    }

    /// <summary>The bearer key, compared in constant time (as hashes, so the comparison does not tell the key's length).</summary>
    private static bool Authorized(HttpContext ctx, byte[] keyHash)
    {
        string header = ctx.Request.Headers.Authorization.ToString();
        const string scheme = "Bearer ";
        string given = header.StartsWith(scheme, StringComparison.OrdinalIgnoreCase) ? header[scheme.Length..].Trim() : "";
        return CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(given)), keyHash) & given.Length > 0;
    }

    /// <summary>The endpoints.</summary>
    public static void Map(IEndpointRouteBuilder app, ServingHost host)
    {
        app.MapGet("/health", ctx => Write(ctx, 200, new StatusResponse("ok"), ServeJsonContext.Default.StatusResponse));
        app.MapGet("/v1/models", ctx => Write(ctx, 200, Models(host), ServeJsonContext.Default.ModelList));
        app.MapGet("/stats", ctx => Write(ctx, 200, Metrics(host), ServeJsonContext.Default.MetricsResponse));
        app.MapPrometheusScrapingEndpoint("/metrics");
        app.MapPost("/v1/completions", ctx => Guarded(ctx, () => ServeCompletions.Complete(ctx, host)));
        app.MapPost("/v1/chat/completions", ctx => Guarded(ctx, () => ServeChat.Complete(ctx, host)));
        app.MapPost("/adapters", ctx => Guarded(ctx, () => LoadAdapter(ctx, host)));
        app.MapDelete("/adapters/{name}", ctx => Guarded(ctx, () => UnloadAdapter(ctx, host)));
    }

    private static Task LoadingOff(HttpContext ctx) =>
        Error(ctx, 403, "adapter loading over HTTP is off; start the server with --allow-adapter-loading --adapter-root DIR", "permission_error", null);

    private static async Task UnloadAdapter(HttpContext ctx, ServingHost host)
    {
        if (host.Root is null)
        {
            await LoadingOff(ctx);
            return;
        }
        string name = (string)ctx.Request.RouteValues["name"]!;
        bool force = ctx.Request.Query.TryGetValue("force", out var f) && f.ToString() is "true" or "1";
        if (!host.Bank.TryGet(name, out _))
        {
            await Error(ctx, 404, $"no adapter '{name}' is loaded", "not_found", "name");
            return;
        }
        int users = host.Scheduler.RequestsUsing(name);
        if (users > 0 && !force)
        {
            await Error(ctx, 409, $"adapter '{name}' is used by {users} request(s); retry when they end, or DELETE /adapters/{name}?force=true (they finish with it)",
                "conflict", "name");
            return;
        }
        if (host.UnloadAdapter(name)) await Write(ctx, 200, new StatusResponse("deleted"), ServeJsonContext.Default.StatusResponse);
        else await Error(ctx, 404, $"no adapter '{name}' is loaded", "not_found", "name");
    }

    private static async Task LoadAdapter(HttpContext ctx, ServingHost host)
    {
        if (host.Root is null)
        {
            await LoadingOff(ctx);
            return;
        }
        var body = await ReadBody(ctx, ServeJsonContext.Default.LoadAdapterBody);
        if (body.Name is not { } name) throw new BadRequest("name: required", "name");
        if (body.Path is not { } path) throw new BadRequest("path: required, a PEFT adapter directory on the server", "path");
        if (name == host.Options.BaseName) throw new BadRequest($"name: '{name}' is the base model's name", "name");
        if (host.Bank.TryGet(name, out _))
        {
            await Error(ctx, 409, $"name: an adapter called '{name}' is already loaded; DELETE /adapters/{name} first", "conflict", "name");
            return;
        }
        // Loaded from the resolved path: what was checked is what is read. Outside the root, one answer whatever is there.
        string directory = host.Root.TryResolve(path) ?? throw new BadRequest(AdapterRoot.Outside, "path");
        LoraRuntime.Hosting.AdapterInfo adapter;
        try
        {
            adapter = host.LoadAdapter(name, directory);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            throw new BadRequest("path: " + e.Message, "path");
        }
        await Write(ctx, 201, new AdapterInfo(adapter.Name, adapter.Modules, adapter.MaxRank, adapter.Bytes), ServeJsonContext.Default.AdapterInfo);
    }

    /// <summary>The request's JSON body as <typeparamref name="T"/>: a body that is not JSON, or not an object, is a 400.</summary>
    internal static async Task<T> ReadBody<T>(HttpContext ctx, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) where T : class
    {
        RequireJson(ctx);
        return await ctx.Request.ReadFromJsonAsync(type, ctx.RequestAborted) ?? throw new BadRequest("the body must be a JSON object", null);
    }

    /// <summary>The model a request names: the base (adapter null) or a loaded adapter; missing is a 400, unknown a 404.</summary>
    internal static (string Model, string? Adapter) Model(ServingHost host, string? model)
    {
        if (model is null) throw new BadRequest("model: required (an adapter's name, or the base model's)", "model");
        string? adapter = model == host.Options.BaseName ? null : model;
        if (adapter is not null && !host.Bank.TryGet(adapter, out _)) throw new NotFound($"model: no model '{model}'; GET /v1/models lists them", "model");
        return (model, adapter);
    }

    internal static void RequireJson(HttpContext ctx)
    {
        if (!ctx.Request.HasJsonContentType())
            throw new BadRequest($"the body must be JSON (Content-Type: application/json); got Content-Type '{ctx.Request.ContentType}'", null);
    }

    internal static string[] Stops(JsonElement? stop)
    {
        if (stop is not { } s || s.ValueKind == JsonValueKind.Null) return [];
        if (s.ValueKind == JsonValueKind.String) return [s.GetString()!];
        if (s.ValueKind == JsonValueKind.Array && s.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String))
            return s.EnumerateArray().Select(e => e.GetString()!).ToArray();
        throw new BadRequest("stop: expected a string or an array of strings", "stop");
    }

    private static ModelList Models(ServingHost host)
    {
        var entries = new List<ModelEntry> { new(host.Options.BaseName, "model", host.Started, "lora-runtime", true) };
        foreach (var name in host.Bank.Names)
            if (host.Bank.TryGet(name, out var a)) entries.Add(new ModelEntry(name, "model", host.Started, "lora-runtime", a.IsResident));
        return new ModelList("list", [.. entries]);
    }

    private static MetricsResponse Metrics(ServingHost host)
    {
        var m = host.Scheduler.Metrics.Snapshot();
        var p = host.Backend.Pool.Stats;
        var b = host.Bank.Stats;
        return new MetricsResponse(m.Requests, m.Failed, m.Cancelled, host.Scheduler.ActiveCount, host.Scheduler.PendingCount, m.GeneratedTokens, m.Steps,
            m.TokensPerSecond, m.MeanBatchRows, new LatencyMetrics(m.LatencyP50Ms, m.LatencyP90Ms, m.LatencyP99Ms),
            new PoolMetrics(p.BytesInUse, p.BytesReserved, p.PeakBytesInUse, p.CacheHits, p.CacheMisses),
            new AdapterMetrics(b.Loaded, b.Resident, b.ResidentBytes, b.BudgetBytes, b.Uploads, b.Evictions), GC.GetTotalMemory(false));
    }

    /// <summary>Runs a handler and maps its failures to JSON errors: 400 for bad input, 404 for an adapter gone meanwhile, 500 otherwise.</summary>
    internal static async Task Guarded(HttpContext ctx, Func<Task> handler)
    {
        try
        {
            await handler();
        }
        catch (BadRequest e)
        {
            await Error(ctx, 400, e.Message, "invalid_request_error", e.Param);
        }
        catch (NotFound e)
        {
            await Error(ctx, 404, e.Message, "not_found", e.Param);
        }
        catch (JsonException e)
        {
            // In the client's terms: where in the body, not which .NET type could not be filled.
            string field = e.Path is { Length: > 1 } path ? path.TrimStart('$', '.') : "";
            string message = field.Length > 0 && e.LineNumber is not null && e.Message.Contains("could not be converted", StringComparison.Ordinal)
                ? $"{field}: a value of the wrong type, or out of range"
                : $"the body is not valid JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1})";
            await Error(ctx, 400, message, "invalid_request_error", field.Length > 0 ? field : null);
        }
        catch (BadHttpRequestException e)
        {
            await Error(ctx, e.StatusCode, e.Message, "invalid_request_error", null);
        }
        catch (AdapterBankFullException e)
        {
            await Error(ctx, 409, e.Message, "conflict", "name");
        }
        catch (SchedulerFullException e)
        {
            ctx.Response.Headers.RetryAfter = "1";
            await Error(ctx, 429, e.Message, "rate_limit_exceeded", null);
        }
        catch (ObjectDisposedException e) when (!ctx.Response.HasStarted)
        {
            ctx.Response.Headers.RetryAfter = "1";
            await Error(ctx, 503, "the server is shutting down: " + e.Message, "server_unavailable", null);
        }
        catch (TimeoutException e) when (!ctx.Response.HasStarted)
        {
            await Error(ctx, 504, e.Message, "timeout", null);
        }
        catch (ArgumentException e)
        {
            int status = e.ParamName == "model" ? 404 : 400;
            string? param = ClientField(e.ParamName);
            // The message in the request's terms: no ".NET" parameter suffix, no "Actual value was" line.
            string message = e.Message.Replace($" (Parameter '{e.ParamName}')", "", StringComparison.Ordinal);
            if (e is ArgumentOutOfRangeException { ActualValue: { } actual }) message = message.Replace($"{Environment.NewLine}Actual value was {actual}.", "", StringComparison.Ordinal);
            await Error(ctx, status, message.ReplaceLineEndings(" ").Trim(), status == 404 ? "not_found" : "invalid_request_error", param);
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            // The client went away; nobody reads a response.
        }
        catch (Exception e) when (!ctx.Response.HasStarted)
        {
            // Unexpected: logged for the operator (the client gets the message, not the trace).
            Console.Error.WriteLine($"lora serve: 500 on {ctx.Request.Method} {ctx.Request.Path}: {e}");
            await Error(ctx, 500, e.Message, "server_error", null);
        }
    }

    /// <summary>The request field an argument of the runtime stands for (its own names are C# names).</summary>
    private static string? ClientField(string? name) => name switch
    {
        "topP" or "TopP" => "top_p",
        "TopK" or "topK" => "top_k",
        "Temperature" or "temperature" => "temperature",
        "MaxTokens" or "maxTokens" => "max_tokens",
        _ => name,
    };

    internal static Task Error(HttpContext ctx, int status, string message, string type, string? param) =>
        Write(ctx, status, new ErrorResponse(new ErrorDetail(message, type, param)), ServeJsonContext.Default.ErrorResponse);

    internal static Task Write<T>(HttpContext ctx, int status, T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type)
    {
        ctx.Response.StatusCode = status;
        return ctx.Response.WriteAsJsonAsync(value, type, contentType: null, ctx.RequestAborted);
    }

    /// <summary>A request the client got wrong, with the field it names.</summary>
    internal sealed class BadRequest(string message, string? param) : Exception(message)
    {
        public string? Param { get; } = param;
    }

    /// <summary>A request for something the server does not have, with the field that names it.</summary>
    internal sealed class NotFound(string message, string? param) : Exception(message)
    {
        public string? Param { get; } = param;
    }
}

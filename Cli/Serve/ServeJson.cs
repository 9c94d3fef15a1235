using System.Text.Json;
using System.Text.Json.Serialization;

namespace LoraRuntime.Cli.Serve;

/// <summary>The body of <c>POST /v1/completions</c> (OpenAI's legacy completions, the fields LoraRuntime serves).</summary>
internal sealed class CompletionBody
{
    [JsonPropertyName("model")] public string? Model { get; set; }
    [JsonPropertyName("prompt")] public string? Prompt { get; set; }
    [JsonPropertyName("max_tokens")] public int? MaxTokens { get; set; }
    [JsonPropertyName("temperature")] public float? Temperature { get; set; }
    [JsonPropertyName("top_k")] public int? TopK { get; set; }
    [JsonPropertyName("top_p")] public float? TopP { get; set; }
    [JsonPropertyName("seed")] public ulong? Seed { get; set; }
    /// <summary>A string or an array of strings.</summary>
    [JsonPropertyName("stop")] public JsonElement? Stop { get; set; }
    /// <summary>Generate past the end-of-sequence token (vLLM's extension).</summary>
    [JsonPropertyName("ignore_eos")] public bool? IgnoreEos { get; set; }
    /// <summary>Answer as server-sent events, a chunk per token, ending "data: [DONE]".</summary>
    [JsonPropertyName("stream")] public bool? Stream { get; set; }
    [JsonPropertyName("stream_options")] public StreamOptionsBody? StreamOptions { get; set; }
    /// <summary>Report each token's log-probability and this many alternatives (0 to 20).</summary>
    [JsonPropertyName("logprobs")] public int? Logprobs { get; set; }
    /// <summary>Choices to generate (each with the next seed).</summary>
    [JsonPropertyName("n")] public int? N { get; set; }
}

/// <summary>A streamed request's options: <c>include_usage</c> adds a last chunk with the usage and no choices.</summary>
internal sealed class StreamOptionsBody
{
    [JsonPropertyName("include_usage")] public bool? IncludeUsage { get; set; }
}

/// <summary>The body of <c>POST /v1/chat/completions</c> (OpenAI's chat completions, the fields LoraRuntime serves).</summary>
internal sealed class ChatBody
{
    [JsonPropertyName("model")] public string? Model { get; set; }
    /// <summary>An array of {role, content}: content a string, an array of text parts, or null.</summary>
    [JsonPropertyName("messages")] public JsonElement? Messages { get; set; }
    [JsonPropertyName("max_tokens")] public int? MaxTokens { get; set; }
    [JsonPropertyName("max_completion_tokens")] public int? MaxCompletionTokens { get; set; }
    [JsonPropertyName("temperature")] public float? Temperature { get; set; }
    [JsonPropertyName("top_k")] public int? TopK { get; set; }
    [JsonPropertyName("top_p")] public float? TopP { get; set; }
    [JsonPropertyName("seed")] public ulong? Seed { get; set; }
    [JsonPropertyName("stop")] public JsonElement? Stop { get; set; }
    [JsonPropertyName("n")] public int? N { get; set; }
    [JsonPropertyName("stream")] public bool? Stream { get; set; }
    [JsonPropertyName("stream_options")] public StreamOptionsBody? StreamOptions { get; set; }
    [JsonPropertyName("logprobs")] public bool? Logprobs { get; set; }
    [JsonPropertyName("top_logprobs")] public int? TopLogprobs { get; set; }
    [JsonPropertyName("ignore_eos")] public bool? IgnoreEos { get; set; }
}

internal sealed record ChatMessageOut(
    [property: JsonPropertyName("role")] string Role,
    [property: JsonPropertyName("content")] string Content);

/// <summary>A token's log-probability in the chat format, with its UTF-8 bytes.</summary>
internal sealed record ChatTokenLogprob(
    [property: JsonPropertyName("token")] string Token,
    [property: JsonPropertyName("logprob")] float Logprob,
    [property: JsonPropertyName("bytes")] int[] Bytes);

internal sealed record ChatContentLogprob(
    [property: JsonPropertyName("token")] string Token,
    [property: JsonPropertyName("logprob")] float Logprob,
    [property: JsonPropertyName("bytes")] int[] Bytes,
    [property: JsonPropertyName("top_logprobs")] ChatTokenLogprob[] TopLogprobs);

internal sealed record ChatLogprobs([property: JsonPropertyName("content")] ChatContentLogprob[] Content);

internal sealed record ChatChoice(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("message")] ChatMessageOut Message,
    [property: JsonPropertyName("finish_reason")] string FinishReason,
    [property: JsonPropertyName("logprobs")] ChatLogprobs? Logprobs);

internal sealed record ChatResponse(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("choices")] ChatChoice[] Choices,
    [property: JsonPropertyName("usage")] CompletionUsage Usage);

/// <summary>A streamed chunk's change to the message: the role first, then the content piece by piece.</summary>
internal sealed record ChatDelta(
    [property: JsonPropertyName("role"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Role,
    [property: JsonPropertyName("content"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Content);

internal sealed record ChatChunkChoice(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("delta")] ChatDelta Delta,
    [property: JsonPropertyName("finish_reason")] string? FinishReason,
    [property: JsonPropertyName("logprobs")] ChatLogprobs? Logprobs);

internal sealed record ChatChunk(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("choices")] ChatChunkChoice[] Choices,
    [property: JsonPropertyName("usage")] CompletionUsage? Usage);

/// <summary>The body of <c>POST /adapters</c>.</summary>
internal sealed class LoadAdapterBody
{
    [JsonPropertyName("name")] public string? Name { get; set; }
    [JsonPropertyName("path")] public string? Path { get; set; }
}

internal sealed record CompletionChoice(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("text")] string Text,
    [property: JsonPropertyName("finish_reason")] string FinishReason,
    [property: JsonPropertyName("logprobs")] CompletionLogprobs? Logprobs = null);

/// <summary>The legacy completions' log-probabilities: per token its text, log-probability, alternatives and offset in the text.</summary>
internal sealed record CompletionLogprobs(
    [property: JsonPropertyName("tokens")] string[] Tokens,
    [property: JsonPropertyName("token_logprobs")] float[] TokenLogprobs,
    [property: JsonPropertyName("top_logprobs")] Dictionary<string, float>[] TopLogprobs,
    [property: JsonPropertyName("text_offset")] int[] TextOffset);

/// <summary>A streamed chunk's choice: the text since the last chunk, the finish reason on the last.</summary>
internal sealed record CompletionChunkChoice(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("text")] string Text,
    [property: JsonPropertyName("finish_reason")] string? FinishReason,
    [property: JsonPropertyName("logprobs")] CompletionLogprobs? Logprobs = null);

internal sealed record CompletionChunk(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("choices")] CompletionChunkChoice[] Choices,
    [property: JsonPropertyName("usage")] CompletionUsage? Usage);

internal sealed record CompletionUsage(
    [property: JsonPropertyName("prompt_tokens")] int PromptTokens,
    [property: JsonPropertyName("completion_tokens")] int CompletionTokens,
    [property: JsonPropertyName("total_tokens")] int TotalTokens);

internal sealed record CompletionResponse(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("choices")] CompletionChoice[] Choices,
    [property: JsonPropertyName("usage")] CompletionUsage Usage);

internal sealed record ModelEntry(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("owned_by")] string OwnedBy,
    [property: JsonPropertyName("resident")] bool Resident);

internal sealed record ModelList(
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("data")] ModelEntry[] Data);

internal sealed record AdapterInfo(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("modules")] int Modules,
    [property: JsonPropertyName("max_rank")] int MaxRank,
    [property: JsonPropertyName("bytes")] long Bytes);

internal sealed record ErrorDetail(
    [property: JsonPropertyName("message")] string Message,
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("param")] string? Param);

internal sealed record ErrorResponse([property: JsonPropertyName("error")] ErrorDetail Error);

internal sealed record StatusResponse([property: JsonPropertyName("status")] string Status);

internal sealed record LatencyMetrics(
    [property: JsonPropertyName("p50")] double P50,
    [property: JsonPropertyName("p90")] double P90,
    [property: JsonPropertyName("p99")] double P99);

internal sealed record PoolMetrics(
    [property: JsonPropertyName("bytes_in_use")] long BytesInUse,
    [property: JsonPropertyName("bytes_reserved")] long BytesReserved,
    [property: JsonPropertyName("peak_bytes_in_use")] long PeakBytesInUse,
    [property: JsonPropertyName("cache_hits")] long CacheHits,
    [property: JsonPropertyName("cache_misses")] long CacheMisses);

internal sealed record AdapterMetrics(
    [property: JsonPropertyName("loaded")] int Loaded,
    [property: JsonPropertyName("resident")] int Resident,
    [property: JsonPropertyName("resident_bytes")] long ResidentBytes,
    [property: JsonPropertyName("budget_bytes")] long BudgetBytes,
    [property: JsonPropertyName("uploads")] long Uploads,
    [property: JsonPropertyName("evictions")] long Evictions);

internal sealed record MetricsResponse(
    [property: JsonPropertyName("requests")] long Requests,
    [property: JsonPropertyName("failed")] long Failed,
    [property: JsonPropertyName("cancelled")] long Cancelled,
    [property: JsonPropertyName("active")] int Active,
    [property: JsonPropertyName("pending")] int Pending,
    [property: JsonPropertyName("generated_tokens")] long GeneratedTokens,
    [property: JsonPropertyName("steps")] long Steps,
    [property: JsonPropertyName("tokens_per_second")] double TokensPerSecond,
    [property: JsonPropertyName("mean_batch_rows")] double MeanBatchRows,
    [property: JsonPropertyName("latency_ms")] LatencyMetrics LatencyMs,
    [property: JsonPropertyName("pool")] PoolMetrics Pool,
    [property: JsonPropertyName("adapters")] AdapterMetrics Adapters,
    [property: JsonPropertyName("managed_heap_bytes")] long ManagedHeapBytes);

/// <summary>Source-generated serialisation for every body the server reads or writes (trim- and AOT-safe).</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(CompletionBody))]
[JsonSerializable(typeof(LoadAdapterBody))]
[JsonSerializable(typeof(CompletionResponse))]
[JsonSerializable(typeof(CompletionChunk))]
[JsonSerializable(typeof(ChatBody))]
[JsonSerializable(typeof(ChatResponse))]
[JsonSerializable(typeof(ChatChunk))]
[JsonSerializable(typeof(ModelList))]
[JsonSerializable(typeof(AdapterInfo))]
[JsonSerializable(typeof(ErrorResponse))]
[JsonSerializable(typeof(StatusResponse))]
[JsonSerializable(typeof(MetricsResponse))]
internal sealed partial class ServeJsonContext : JsonSerializerContext;

namespace LoraRuntime.Cli.Bench;

/// <summary>
/// One <c>lora bench latency</c> result, as JSON: <c>{"model", "device", "op", "adapter", "shape", "tokens", "reps",
/// "p50_ms", "p99_ms", "p999_ms", "max_ms", "p99_over_p50", "gen0_collections", "gen1_collections",
/// "gen2_collections", "allocated_bytes", "tokens_per_second", "pool_peak_bytes", "process_peak_bytes"}</c>.
/// </summary>
/// <param name="Model">"demo", "gpt2-small", a Llama-family preset, or the LxNHxCxVxT given.</param>
/// <param name="Device">The backend's name ("cpu").</param>
/// <param name="Op">"forward" (a single request's forward over its prompt, a full prefill) or "decode" (one decode step of one request).</param>
/// <param name="Adapter">"base", or "lora" (one adapter of rank R at scale 1).</param>
/// <param name="Shape">[L, NH, C, V, T]: layers, heads, channels, vocabulary, the context reserved.</param>
/// <param name="Tokens">The prompt's length (forward) or the tokens already cached (decode).</param>
/// <param name="Reps">Timed calls.</param>
/// <param name="P50Ms">Median latency, in milliseconds.</param>
/// <param name="P99Ms">99th percentile (nearest rank).</param>
/// <param name="P999Ms">99.9th percentile (the largest for fewer than 1000 calls).</param>
/// <param name="MaxMs">The slowest call.</param>
/// <param name="P99OverP50">P99 / P50.</param>
/// <param name="Gen0Collections">Garbage collections of generation 0 during the timed calls (process-wide).</param>
/// <param name="Gen1Collections">Generation 1.</param>
/// <param name="Gen2Collections">Generation 2.</param>
/// <param name="AllocatedBytes">Bytes the timed calls allocated on the calling thread.</param>
/// <param name="TokensPerSecond">Tokens a second at the median: the prompt's for a forward, one for a decode step.</param>
/// <param name="PoolPeakBytes">The backend pool's peak bytes in use (weights, their packed snapshot, cache, activations) before the case.</param>
/// <param name="ProcessPeakBytes">The process's peak working set after the case.</param>
internal sealed record LatencyRecord(string Model, string Device, string Op, string Adapter, int[] Shape, int Tokens, int Reps,
    double P50Ms, double P99Ms, double P999Ms, double MaxMs, double P99OverP50, int Gen0Collections, int Gen1Collections, int Gen2Collections,
    long AllocatedBytes, double TokensPerSecond, long PoolPeakBytes, long ProcessPeakBytes);

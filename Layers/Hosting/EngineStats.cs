using LoraRuntime.Layers.Serving;
using LoraRuntime.Memory;

namespace LoraRuntime.Hosting;

/// <summary>Latency percentiles over an engine's recent calls (the last 4096 calls), nearest rank.</summary>
/// <param name="Count">Calls completed since the engine started.</param>
/// <param name="P50Ms">Median, in milliseconds.</param>
/// <param name="P99Ms">99th percentile.</param>
/// <param name="P999Ms">99.9th percentile.</param>
public readonly record struct LatencyStats(long Count, double P50Ms, double P99Ms, double P999Ms);

/// <summary>An adapter an engine holds.</summary>
/// <param name="Name">The name calls use.</param>
/// <param name="Modules">The projections it adapts.</param>
/// <param name="MaxRank">Its largest rank R.</param>
/// <param name="Bytes">Bytes of its device copy (counted against the adapter budget while resident).</param>
public sealed record AdapterInfo(string Name, int Modules, int MaxRank, long Bytes);

/// <summary>A snapshot of a <see cref="LoraEngine"/>'s counters.</summary>
/// <param name="Device">The backend's name ("cpu", "cuda:0").</param>
/// <param name="Pool">The device memory pool: bytes in use, reserved, peak, cache hits and misses.</param>
/// <param name="Adapters">Adapters loaded and resident, their bytes against the budget, uploads and evictions.</param>
/// <param name="Generation">Generations: requests, tokens, steps, throughput, batch size and request latencies.</param>
/// <param name="Forward">Latencies of <see cref="LoraEngine.Forward(ReadOnlySpan{int}, Span{float}, string?, float)"/> calls.</param>
/// <param name="ActiveRequests">Generations being decoded now.</param>
/// <param name="PendingRequests">Generations waiting for a slot.</param>
public sealed record EngineStats(string Device, PoolStats Pool, AdapterBankStats Adapters, MetricsSnapshot Generation, LatencyStats Forward,
    int ActiveRequests, int PendingRequests);

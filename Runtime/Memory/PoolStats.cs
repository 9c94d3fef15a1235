namespace LoraRuntime.Memory;

/// <summary>A snapshot of a memory pool's counters.</summary>
/// <param name="BytesInUse">Bytes handed out and not yet returned (rounded up to size classes).</param>
/// <param name="BytesReserved">Bytes held from the system: in use plus cached.</param>
/// <param name="PeakBytesInUse">The largest <paramref name="BytesInUse"/> seen since creation or <see cref="MemoryPool.ResetPeak"/>.</param>
/// <param name="CacheHits">Requests served from the cache.</param>
/// <param name="CacheMisses">Requests that had to go to the system.</param>
/// <param name="SystemAllocations">Blocks obtained from the system.</param>
/// <param name="SystemFrees">Blocks given back to the system (by <see cref="MemoryPool.Trim"/> or retry on failure).</param>
public readonly record struct PoolStats(
    long BytesInUse,
    long BytesReserved,
    long PeakBytesInUse,
    long CacheHits,
    long CacheMisses,
    long SystemAllocations,
    long SystemFrees);

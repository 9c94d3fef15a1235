namespace LoraRuntime;

/// <summary>
/// One query of <see cref="Backend.CachedAttention"/>, as element offsets: the query's NH·HS values start at
/// <see cref="Query"/> of the queries tensor (head h at + h·HS), its output's at <see cref="Output"/> of the output
/// tensor, and position 0 of its cached keys and values at <see cref="Keys"/> and <see cref="Values"/> of the cache
/// (position j at + j·stride, head h at + h·HS). It attends positions [0, <see cref="Length"/>): a decode step's
/// token is one row; a prefill of n tokens is n rows over the same cache, of lengths Start + 1 … Start + n (the
/// causal mask).
/// </summary>
/// <param name="Query">First element of the query row.</param>
/// <param name="Output">First element of the output row.</param>
/// <param name="Keys">First element of the cached keys (position 0).</param>
/// <param name="Values">First element of the cached values (position 0).</param>
/// <param name="Length">Cached positions attended, ≥ 1 (the query's own included).</param>
public readonly record struct DecodeAttentionRow(long Query, long Output, long Keys, long Values, int Length);

namespace LoraRuntime;

public abstract partial class Backend
{
    /// <summary>
    /// Attention of single-token queries, each over its own cached keys and values (a batched decode step): for every
    /// row and head h, out_h = softmax(<paramref name="scale"/> · q_h·K_hᵀ)·V_h over the row's
    /// <see cref="DecodeAttentionRow.Length"/> positions, where the cache holds each position's NH·HS keys (and values)
    /// as a row of stride <paramref name="cacheStride"/>. Every row and head is independent, so a row's result does not
    /// depend on the others in the call. Validated first; then returns false, having computed nothing, where this
    /// backend has no fused kernel for it (the caller composes it from GEMMs and a softmax, as for a prefill). Rows'
    /// outputs must not overlap one another.
    /// </summary>
    public bool TryDecodeAttention(Tensor output, Tensor queries, Tensor cache, int cacheStride, ReadOnlySpan<DecodeAttentionRow> rows,
        int heads, int headSize, float scale)
    {
        Check.Tensor(this, output, DType.F32, nameof(output));
        Check.Tensor(this, queries, DType.F32, nameof(queries));
        Check.Tensor(this, cache, DType.F32, nameof(cache));
        Check.Positive(heads, nameof(heads));
        Check.Positive(headSize, nameof(headSize));
        Check.Finite(scale, nameof(scale));
        long width = (long)heads * headSize;
        if (cacheStride < width)
            throw new ArgumentOutOfRangeException(nameof(cacheStride), cacheStride, $"cacheStride: expected ≥ NH·HS = {width} (a cached position's row); got {cacheStride}");
        Check.NoOverlap(output, nameof(output), queries, nameof(queries));
        Check.NoOverlap(output, nameof(output), cache, nameof(cache));
        int maxLength = 0;
        for (int i = 0; i < rows.Length; i++)
        {
            var r = rows[i];
            if (r.Length < 1)
                throw new ArgumentOutOfRangeException(nameof(rows), r.Length, $"rows[{i}].Length: expected ≥ 1 cached position; got {r.Length}");
            Within(r.Query, width, queries, i, nameof(r.Query), nameof(queries));
            Within(r.Output, width, output, i, nameof(r.Output), nameof(output));
            long span = (long)(r.Length - 1) * cacheStride + width;
            Within(r.Keys, span, cache, i, nameof(r.Keys), nameof(cache));
            Within(r.Values, span, cache, i, nameof(r.Values), nameof(cache));
            maxLength = Math.Max(maxLength, r.Length);
        }
        if (rows.Length == 0) return true;
        return DecodeAttentionCore(output, queries, cache, cacheStride, rows, heads, headSize, scale, maxLength);

        // The message is built only when a row fails: a steady decode step allocates nothing.
        static void Within(long offset, long count, Tensor t, int row, string field, string tensor)
        {
            if (offset < 0 || offset + count > t.Length)
                throw new ArgumentOutOfRangeException(nameof(rows), offset,
                    $"rows[{row}].{field}: {count} elements from offset {offset} must lie inside {tensor} {t.Shape} ({t.Length} elements)");
        }
    }

    /// <summary>
    /// A validated, non-empty <see cref="TryDecodeAttention"/> (<paramref name="maxLength"/>: the longest row). The
    /// default has no fused kernel: false.
    /// </summary>
    protected virtual bool DecodeAttentionCore(Tensor output, Tensor queries, Tensor cache, int cacheStride, ReadOnlySpan<DecodeAttentionRow> rows,
        int heads, int headSize, float scale, int maxLength) => false;
}

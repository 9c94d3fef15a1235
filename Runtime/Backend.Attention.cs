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

public abstract partial class Backend
{
    /// <summary>
    /// Causal self-attention per (batch, head), fused: att = causal softmax(<paramref name="scale"/>·q·kᵀ) with masked
    /// entries 0, and <paramref name="output"/> = att·v. q, k, v and the output are [.., T, HS] (heads split, the
    /// leading dimensions their batch·heads), att is [.., T, T]. Validated first; then returns false, having computed
    /// nothing, where this backend has no fused kernel for the shape (the caller composes it from strided-batched
    /// GEMMs and <see cref="SoftmaxForward"/>, which compute the same).
    /// </summary>
    public bool TryCausalAttentionForward(Tensor output, Tensor att, Tensor q, Tensor k, Tensor v, float scale)
    {
        var (heads, time, headSize) = AttentionShapes(q, nameof(q), att, nameof(att), [output, k, v], [nameof(output), nameof(k), nameof(v)]);
        Check.Finite(scale, nameof(scale));
        Check.NoOverlap(output, nameof(output), q, nameof(q));
        Check.NoOverlap(output, nameof(output), k, nameof(k));
        Check.NoOverlap(output, nameof(output), v, nameof(v));
        Check.NoOverlap(att, nameof(att), q, nameof(q));
        Check.NoOverlap(att, nameof(att), output, nameof(output));
        if (heads == 0 || time == 0 || headSize == 0) return true;
        return CausalAttentionForwardCore(output, att, q, k, v, heads, time, headSize, scale);
    }

    /// <summary>
    /// The backward pass of <see cref="TryCausalAttentionForward"/> from dy and the saved att: writes dq, dk and dv
    /// (overwritten, not accumulated) and the score gradient into <paramref name="dScores"/> [.., T, T]. False, having
    /// computed nothing, where this backend has no fused kernel for the shape.
    /// </summary>
    public bool TryCausalAttentionBackward(Tensor dq, Tensor dk, Tensor dv, Tensor dScores, Tensor dy, Tensor q, Tensor k, Tensor v, Tensor att, float scale)
    {
        var (heads, time, headSize) = AttentionShapes(q, nameof(q), att, nameof(att), [dq, dk, dv, dy, k, v], [nameof(dq), nameof(dk), nameof(dv), nameof(dy), nameof(k), nameof(v)]);
        Check.SameShape(att, nameof(att), dScores, nameof(dScores));
        Check.Finite(scale, nameof(scale));
        ReadOnlySpan<Tensor> outputs = [dq, dk, dv, dScores];
        ReadOnlySpan<string> outputNames = [nameof(dq), nameof(dk), nameof(dv), nameof(dScores)];
        ReadOnlySpan<Tensor> inputs = [dy, q, k, v, att];
        ReadOnlySpan<string> inputNames = [nameof(dy), nameof(q), nameof(k), nameof(v), nameof(att)];
        for (int o = 0; o < outputs.Length; o++)
        {
            for (int i = 0; i < inputs.Length; i++) Check.NoOverlap(outputs[o], outputNames[o], inputs[i], inputNames[i]);
            for (int p = o + 1; p < outputs.Length; p++) Check.NoOverlap(outputs[o], outputNames[o], outputs[p], outputNames[p]);
        }
        if (heads == 0 || time == 0 || headSize == 0) return true;
        return CausalAttentionBackwardCore(dq, dk, dv, dScores, dy, q, k, v, att, heads, time, headSize, scale);
    }

    /// <summary>A validated, non-empty <see cref="TryCausalAttentionForward"/> over <paramref name="heads"/> (batch·head) matrices. Default: no fused kernel.</summary>
    protected virtual bool CausalAttentionForwardCore(Tensor output, Tensor att, Tensor q, Tensor k, Tensor v, long heads, int time, int headSize, float scale) => false;

    /// <summary>A validated, non-empty <see cref="TryCausalAttentionBackward"/>. Default: no fused kernel.</summary>
    protected virtual bool CausalAttentionBackwardCore(Tensor dq, Tensor dk, Tensor dv, Tensor dScores, Tensor dy, Tensor q, Tensor k, Tensor v, Tensor att,
        long heads, int time, int headSize, float scale) => false;

    /// <summary>Checks q [.., T, HS] against the others (same shape) and att [.., T, T]; returns (batch·heads, T, HS).</summary>
    private (long Heads, int Time, int HeadSize) AttentionShapes(Tensor q, string qName, Tensor att, string attName, ReadOnlySpan<Tensor> same, ReadOnlySpan<string> names)
    {
        Check.Tensor(this, q, DType.F32, qName);
        Check.Tensor(this, att, DType.F32, attName);
        Check.Tensors(this, DType.F32, same, names);
        if (q.Shape.Rank < 2) throw new ArgumentException($"{qName}: expected [.., T, HS] (rank ≥ 2); got {q.Shape}", qName);
        Check.SameShapes(q, qName, same, names);
        int time = q.Shape[-2], headSize = q.Shape[-1];
        long heads = time == 0 || headSize == 0 ? 0 : q.Length / ((long)time * headSize);
        if (att.Shape.Rank != q.Shape.Rank || att.Shape[-1] != time || att.Shape[-2] != time || att.Length != heads * time * time)
            throw new ArgumentException($"{attName}: expected [.., T, T] = [.., {time}, {time}] with the leading dimensions of {qName} {q.Shape}; got {att.Shape}", attName);
        return (heads, time, headSize);
    }
}

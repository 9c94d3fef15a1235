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
            if (offset < 0 || count > t.Length || offset > t.Length - count)
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

    /// <summary>
    /// Causal self-attention of a packed projection, fused per (batch, head): <paramref name="qkv"/> is [B, T, 3C] with
    /// q, k and v each C = NH·HS wide (head h at columns h·HS, GPT-2's c_attn layout); att [B, NH, T, T] = causal
    /// softmax(<paramref name="scale"/>·q·kᵀ) with masked entries 0, and <paramref name="output"/> [B, T, C] = att·v
    /// with head h at columns h·HS (heads merged). Validated first; then returns false, having computed nothing, where
    /// this backend has no fused kernel for the shape (the caller splits heads and composes strided-batched GEMMs
    /// around <see cref="SoftmaxForward"/>, which compute the same).
    /// </summary>
    public bool TryCausalSelfAttentionForward(Tensor output, Tensor att, Tensor qkv, int heads, float scale)
    {
        var (batch, time, channels) = SelfAttentionShapes(qkv, nameof(qkv), heads, att, nameof(att));
        CheckRows(output, nameof(output), batch, time, channels);
        Check.Finite(scale, nameof(scale));
        Check.NoOverlap(output, nameof(output), qkv, nameof(qkv));
        Check.NoOverlap(att, nameof(att), qkv, nameof(qkv));
        Check.NoOverlap(att, nameof(att), output, nameof(output));
        if (batch == 0 || time == 0) return true;
        return CausalSelfAttentionForwardCore(output, att, qkv, batch, time, heads, channels / heads, scale);
    }

    /// <summary>
    /// The backward pass of <see cref="TryCausalSelfAttentionForward"/> from dy [B, T, C] and the saved att: writes
    /// <paramref name="dQkv"/> [B, T, 3C] whole (dq, dk, dv in qkv's layout; stored, not accumulated) and the score
    /// gradient into <paramref name="dScores"/> [B, NH, T, T]. False, having computed nothing, where this backend has
    /// no fused kernel for the shape.
    /// </summary>
    public bool TryCausalSelfAttentionBackward(Tensor dQkv, Tensor dScores, Tensor dy, Tensor qkv, Tensor att, int heads, float scale)
    {
        var (batch, time, channels) = SelfAttentionShapes(qkv, nameof(qkv), heads, att, nameof(att));
        Check.Tensor(this, dQkv, DType.F32, nameof(dQkv));
        Check.SameShape(qkv, nameof(qkv), dQkv, nameof(dQkv));
        Check.Tensor(this, dScores, DType.F32, nameof(dScores));
        Check.SameShape(att, nameof(att), dScores, nameof(dScores));
        CheckRows(dy, nameof(dy), batch, time, channels);
        Check.Finite(scale, nameof(scale));
        ReadOnlySpan<Tensor> outputs = [dQkv, dScores];
        ReadOnlySpan<string> outputNames = [nameof(dQkv), nameof(dScores)];
        ReadOnlySpan<Tensor> inputs = [dy, qkv, att];
        ReadOnlySpan<string> inputNames = [nameof(dy), nameof(qkv), nameof(att)];
        for (int o = 0; o < outputs.Length; o++)
            for (int i = 0; i < inputs.Length; i++) Check.NoOverlap(outputs[o], outputNames[o], inputs[i], inputNames[i]);
        Check.NoOverlap(dQkv, nameof(dQkv), dScores, nameof(dScores));
        if (batch == 0 || time == 0) return true;
        return CausalSelfAttentionBackwardCore(dQkv, dScores, dy, qkv, att, batch, time, heads, channels / heads, scale);
    }

    /// <summary>A validated, non-empty <see cref="TryCausalSelfAttentionForward"/>. Default: no fused kernel.</summary>
    protected virtual bool CausalSelfAttentionForwardCore(Tensor output, Tensor att, Tensor qkv, int batch, int time, int heads, int headSize, float scale) => false;

    /// <summary>A validated, non-empty <see cref="TryCausalSelfAttentionBackward"/>. Default: no fused kernel.</summary>
    protected virtual bool CausalSelfAttentionBackwardCore(Tensor dQkv, Tensor dScores, Tensor dy, Tensor qkv, Tensor att, int batch, int time, int heads,
        int headSize, float scale) => false;

    /// <summary>Checks qkv [B, T, 3C] with C a multiple of <paramref name="heads"/>, and att [B, NH, T, T]; returns (B, T, C).</summary>
    private (int Batch, int Time, int Channels) SelfAttentionShapes(Tensor qkv, string qkvName, int heads, Tensor att, string attName)
    {
        Check.Tensor(this, qkv, DType.F32, qkvName);
        Check.Tensor(this, att, DType.F32, attName);
        Check.Positive(heads, nameof(heads));
        if (qkv.Shape.Rank != 3 || qkv.Shape[2] % 3 != 0 || qkv.Shape[2] / 3 % heads != 0)
            throw new ArgumentException(
                $"{qkvName}: expected [B, T, 3C] with C a multiple of NH = {heads} (q, k, v side by side); got {qkv.Shape}", qkvName);
        int batch = qkv.Shape[0], time = qkv.Shape[1], channels = qkv.Shape[2] / 3;
        if (att.Shape.Rank != 4 || att.Shape[0] != batch || att.Shape[1] != heads || att.Shape[2] != time || att.Shape[3] != time)
            throw new ArgumentException($"{attName}: expected [B, NH, T, T] = [{batch}, {heads}, {time}, {time}]; got {att.Shape}", attName);
        return (batch, time, channels);
    }

    private void CheckRows(Tensor t, string name, int batch, int time, int channels)
    {
        Check.Tensor(this, t, DType.F32, name);
        if (t.Shape.Rank != 3 || t.Shape[0] != batch || t.Shape[1] != time || t.Shape[2] != channels)
            throw new ArgumentException($"{name}: expected [B, T, C] = [{batch}, {time}, {channels}]; got {t.Shape}", name);
    }
}

namespace LoraRuntime;

// Attention: causal self-attention over a [B, T] batch (training) and attention of queries over a KV cache (prefill
// and decode). Each is one operation whose default composes the backend's GEMMs and softmax; a backend with a fused
// kernel overrides the core. Layers call the public method and never choose between the two.
public abstract partial class Backend
{
    /// <summary>
    /// Attention of queries over their own cached keys and values (a serving step): for every row and query head h,
    /// out_h = softmax(<paramref name="scale"/> · q_h·K_jᵀ)·V_j over the row's <see cref="DecodeAttentionRow.Length"/>
    /// positions, with j = h / (NH / KVH) the key/value head h reads (grouped-query attention; KVH = NH is multi-head),
    /// where the cache holds each position's KVH·HS keys (and values) as a row of stride <paramref name="cacheStride"/>,
    /// and a row's NH·HS query and output values are contiguous. Every row and head is independent, so a row's result
    /// does not depend on the others in the call. <paramref name="scores"/> (at least NH × the longest row's length
    /// floats) is the composed path's scratch; a fused kernel leaves it alone. Rows' outputs must not overlap one another.
    /// </summary>
    public void CachedAttention(Tensor output, Tensor queries, Tensor cache, int cacheStride, ReadOnlySpan<DecodeAttentionRow> rows,
        int heads, int kvHeads, int headSize, float scale, Tensor scores)
    {
        Check.Tensor(this, output, DType.F32, nameof(output));
        Check.Tensor(this, queries, DType.F32, nameof(queries));
        Check.Tensor(this, cache, DType.F32, nameof(cache));
        Check.Tensor(this, scores, DType.F32, nameof(scores));
        Check.Positive(heads, nameof(heads));
        CheckKeyValueHeads(heads, kvHeads);
        Check.Positive(headSize, nameof(headSize));
        Check.Finite(scale, nameof(scale));
        long width = (long)heads * headSize, kvWidth = (long)kvHeads * headSize;
        if (cacheStride < kvWidth)
            throw new ArgumentOutOfRangeException(nameof(cacheStride), cacheStride, $"cacheStride: expected ≥ KVH·HS = {kvWidth} (a cached position's row); got {cacheStride}");
        Check.NoOverlap(output, nameof(output), queries, nameof(queries));
        Check.NoOverlap(output, nameof(output), cache, nameof(cache));
        Check.NoOverlap(scores, nameof(scores), output, nameof(output));
        Check.NoOverlap(scores, nameof(scores), queries, nameof(queries));
        Check.NoOverlap(scores, nameof(scores), cache, nameof(cache));
        int maxLength = 0;
        for (int i = 0; i < rows.Length; i++)
        {
            var r = rows[i];
            if (r.Length < 1)
                throw new ArgumentOutOfRangeException(nameof(rows), r.Length, $"rows[{i}].Length: expected ≥ 1 cached position; got {r.Length}");
            Within(r.Query, width, queries, i, nameof(r.Query), nameof(queries));
            Within(r.Output, width, output, i, nameof(r.Output), nameof(output));
            long span = (long)(r.Length - 1) * cacheStride + kvWidth;
            Within(r.Keys, span, cache, i, nameof(r.Keys), nameof(cache));
            Within(r.Values, span, cache, i, nameof(r.Values), nameof(cache));
            maxLength = Math.Max(maxLength, r.Length);
        }
        if (rows.Length == 0) return;
        if (scores.Length < (long)heads * maxLength)
            throw new ArgumentException($"scores: expected room for NH × the longest row = {heads} × {maxLength} floats; got {scores.Length}", nameof(scores));
        CachedAttentionCore(output, queries, cache, cacheStride, rows, heads, kvHeads, headSize, scale, maxLength, scores);

        // The message is built only when a row fails: a steady step allocates nothing.
        static void Within(long offset, long count, Tensor t, int row, string field, string tensor)
        {
            if (offset < 0 || count > t.Length || offset > t.Length - count)
                throw new ArgumentOutOfRangeException(nameof(rows), offset,
                    $"rows[{row}].{field}: {count} elements from offset {offset} must lie inside {tensor} {t.Shape} ({t.Length} elements)");
        }
    }

    /// <summary>
    /// A validated, non-empty <see cref="CachedAttention"/> (<paramref name="maxLength"/>: the longest row). The default
    /// composes it row by row: per key/value head, its group of g = NH / KVH query heads (consecutive in the row) as one
    /// [g, HS] matrix, the scores [g, len] of every group as one strided batch into <paramref name="scores"/> [NH, len],
    /// their softmax, and the weighted values [g, HS] as another strided batch into the row's output.
    /// </summary>
    protected virtual void CachedAttentionCore(Tensor output, Tensor queries, Tensor cache, int cacheStride, ReadOnlySpan<DecodeAttentionRow> rows,
        int heads, int kvHeads, int headSize, float scale, int maxLength, Tensor scores)
    {
        int hs = headSize, group = heads / kvHeads;
        foreach (var row in rows)
        {
            int len = row.Length;
            var logits = new GemmProblem
            {
                TransA = Transpose.No, TransB = Transpose.Yes, M = group, N = len, K = hs, Alpha = scale, Beta = 0f,
                A = queries, OffsetA = row.Query, Lda = hs, B = cache, OffsetB = row.Keys, Ldb = cacheStride, C = scores, Ldc = len,
            };
            GemmStridedBatchedCore(logits, (long)group * hs, hs, (long)group * len, kvHeads);
            SoftmaxRowsCore(scores, 0, heads, len);
            var weighted = new GemmProblem
            {
                TransA = Transpose.No, TransB = Transpose.No, M = group, N = hs, K = len, Alpha = 1f, Beta = 0f,
                A = scores, Lda = len, B = cache, OffsetB = row.Values, Ldb = cacheStride, C = output, OffsetC = row.Output, Ldc = hs,
            };
            GemmStridedBatchedCore(weighted, (long)group * len, hs, (long)group * hs, kvHeads);
        }
    }

    /// <summary>
    /// Softmax in place over <paramref name="rows"/> contiguous rows of <paramref name="cols"/> floats starting at element
    /// <paramref name="offset"/> of <paramref name="buffer"/> (validated by the caller). The default takes a view and
    /// calls <see cref="SoftmaxForwardCore"/>; a backend overrides it to address the rows without a view object.
    /// </summary>
    protected virtual void SoftmaxRowsCore(Tensor buffer, long offset, int rows, int cols)
    {
        using var view = buffer.View(offset, new Shape(rows, cols));
        SoftmaxForwardCore(view, view, causal: false);
    }

    /// <summary>
    /// Causal self-attention of a packed projection: <paramref name="qkv"/> is [B, T, (NH + 2·KVH)·HS] with q (NH heads),
    /// k and v (KVH heads each) side by side, head h at columns h·HS of its part (GPT-2's c_attn layout when KVH = NH);
    /// query head h reads key/value head h / (NH / KVH) (grouped-query attention). att [B, NH, T, T] = causal
    /// softmax(<paramref name="scale"/>·q·kᵀ) with masked entries 0, and <paramref name="output"/> [B, T, NH·HS] = att·v
    /// with head h at columns h·HS (heads merged). The composed path splits the heads into <paramref name="scratch"/>;
    /// a fused kernel works from qkv directly. The backward pass must see the same shapes and scratch.
    /// </summary>
    public void CausalSelfAttentionForward(Tensor output, Tensor att, Tensor qkv, int heads, int kvHeads, float scale, in AttentionScratch scratch)
    {
        var (batch, time, headSize) = SelfAttentionShapes(qkv, nameof(qkv), heads, kvHeads, att, nameof(att));
        int channels = heads * headSize;
        CheckRows(output, nameof(output), batch, time, channels);
        Check.Finite(scale, nameof(scale));
        Check.NoOverlap(output, nameof(output), qkv, nameof(qkv));
        Check.NoOverlap(att, nameof(att), qkv, nameof(qkv));
        Check.NoOverlap(att, nameof(att), output, nameof(output));
        CheckHeads(scratch.Queries, "scratch.Queries", batch, heads, time, headSize);
        CheckHeads(scratch.Keys, "scratch.Keys", batch, kvHeads, time, headSize);
        CheckHeads(scratch.Values, "scratch.Values", batch, kvHeads, time, headSize);
        CheckHeads(scratch.Heads, "scratch.Heads", batch, heads, time, headSize);
        if (batch == 0 || time == 0) return;
        CausalSelfAttentionForwardCore(output, att, qkv, batch, time, heads, kvHeads, headSize, scale, scratch);
    }

    /// <summary>
    /// The backward pass of <see cref="CausalSelfAttentionForward"/> from dy [B, T, C], the saved att and the forward
    /// pass's <paramref name="saved"/> scratch: writes <paramref name="dQkv"/> [B, T, 3C] whole (dq, dk, dv in qkv's
    /// layout; stored, not accumulated) and the score gradient into <paramref name="dScores"/> [B, NH, T, T].
    /// </summary>
    public void CausalSelfAttentionBackward(Tensor dQkv, Tensor dScores, Tensor dy, Tensor qkv, Tensor att, int heads, int kvHeads, float scale,
        in AttentionScratch saved, in AttentionGradientScratch gradients)
    {
        var (batch, time, headSize) = SelfAttentionShapes(qkv, nameof(qkv), heads, kvHeads, att, nameof(att));
        int channels = heads * headSize;
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
        CheckHeads(saved.Queries, "saved.Queries", batch, heads, time, headSize);
        CheckHeads(saved.Keys, "saved.Keys", batch, kvHeads, time, headSize);
        CheckHeads(saved.Values, "saved.Values", batch, kvHeads, time, headSize);
        CheckHeads(gradients.DQueries, "gradients.DQueries", batch, heads, time, headSize);
        CheckHeads(gradients.DKeys, "gradients.DKeys", batch, kvHeads, time, headSize);
        CheckHeads(gradients.DValues, "gradients.DValues", batch, kvHeads, time, headSize);
        CheckHeads(gradients.DHeads, "gradients.DHeads", batch, heads, time, headSize);
        Check.Tensor(this, gradients.DAtt, DType.F32, "gradients.DAtt");
        Check.SameShape(att, nameof(att), gradients.DAtt, "gradients.DAtt");
        if (batch == 0 || time == 0) return;
        CausalSelfAttentionBackwardCore(dQkv, dScores, dy, qkv, att, batch, time, heads, kvHeads, headSize, scale, saved, gradients);
    }

    /// <summary>
    /// A validated, non-empty <see cref="CausalSelfAttentionForward"/>. The default splits q, k, v into heads, runs the
    /// scores and the weighted values as strided-batched GEMMs around a causal <see cref="SoftmaxForward"/>, and merges
    /// the heads' outputs into rows. A key/value head's group of g = NH / KVH query heads is consecutive in q's heads,
    /// so each product takes the group as one [g·T, ·] matrix: a batch of B·KVH, and the dK, dV products of the
    /// backward pass sum over the group inside the GEMM.
    /// </summary>
    protected virtual void CausalSelfAttentionForwardCore(Tensor output, Tensor att, Tensor qkv, int batch, int time, int heads, int kvHeads,
        int headSize, float scale, in AttentionScratch scratch)
    {
        int group = heads / kvHeads, rows = group * time, batches = batch * kvHeads;
        long headStride = (long)time * headSize, groupStride = (long)rows * headSize, attStride = (long)rows * time;
        SplitHeads(scratch.Queries, qkv, 0);
        SplitHeads(scratch.Keys, qkv, heads * headSize);
        SplitHeads(scratch.Values, qkv, (heads + kvHeads) * headSize);
        GemmStridedBatched(new GemmProblem(att, scratch.Queries, scratch.Keys, rows, time, headSize, Transpose.No, Transpose.Yes, scale),
            groupStride, headStride, attStride, batches);
        SoftmaxForward(att, att, causal: true);
        GemmStridedBatched(new GemmProblem(scratch.Heads, att, scratch.Values, rows, headSize, time), attStride, headStride, groupStride, batches);
        MergeHeads(output, scratch.Heads, 0);
    }

    /// <summary>
    /// A validated, non-empty <see cref="CausalSelfAttentionBackward"/>. The default: dy into heads, datt = dy·vᵀ,
    /// dv = attᵀ·dy, the softmax's backward pass into dScores, dq = s·dScores·k, dk = s·dScoresᵀ·q, merged into dQkv
    /// (each key/value head's group of query heads as one matrix, as in the forward pass).
    /// </summary>
    protected virtual void CausalSelfAttentionBackwardCore(Tensor dQkv, Tensor dScores, Tensor dy, Tensor qkv, Tensor att, int batch, int time,
        int heads, int kvHeads, int headSize, float scale, in AttentionScratch saved, in AttentionGradientScratch gradients)
    {
        int group = heads / kvHeads, rows = group * time, batches = batch * kvHeads;
        long headStride = (long)time * headSize, groupStride = (long)rows * headSize, attStride = (long)rows * time;
        SplitHeads(gradients.DHeads, dy, 0);
        GemmStridedBatched(new GemmProblem(gradients.DAtt, gradients.DHeads, saved.Values, rows, time, headSize, Transpose.No, Transpose.Yes),
            groupStride, headStride, attStride, batches);
        GemmStridedBatched(new GemmProblem(gradients.DValues, att, gradients.DHeads, time, headSize, rows, Transpose.Yes), attStride, groupStride, headStride,
            batches);
        Fill(dScores, 0f);
        SoftmaxBackward(dScores, att, gradients.DAtt, causal: true);
        GemmStridedBatched(new GemmProblem(gradients.DQueries, dScores, saved.Keys, rows, headSize, time, alpha: scale), attStride, headStride, groupStride,
            batches);
        GemmStridedBatched(new GemmProblem(gradients.DKeys, dScores, saved.Queries, time, headSize, rows, Transpose.Yes, alpha: scale),
            attStride, groupStride, headStride, batches);
        MergeHeads(dQkv, gradients.DQueries, 0);
        MergeHeads(dQkv, gradients.DKeys, heads * headSize);
        MergeHeads(dQkv, gradients.DValues, (heads + kvHeads) * headSize);
    }

    /// <summary>
    /// Checks qkv [B, T, (NH + 2·KVH)·HS] with KVH dividing NH, and att [B, NH, T, T]; returns (B, T, HS).
    /// </summary>
    private (int Batch, int Time, int HeadSize) SelfAttentionShapes(Tensor qkv, string qkvName, int heads, int kvHeads, Tensor att, string attName)
    {
        Check.Tensor(this, qkv, DType.F32, qkvName);
        Check.Tensor(this, att, DType.F32, attName);
        Check.Positive(heads, nameof(heads));
        CheckKeyValueHeads(heads, kvHeads);
        int parts = heads + 2 * kvHeads;
        if (qkv.Shape.Rank != 3 || qkv.Shape[2] % parts != 0)
            throw new ArgumentException(
                $"{qkvName}: expected [B, T, (NH + 2·KVH)·HS] = [B, T, {parts}·HS] (q, k, v side by side); got {qkv.Shape}", qkvName);
        int batch = qkv.Shape[0], time = qkv.Shape[1], headSize = qkv.Shape[2] / parts;
        if (att.Shape.Rank != 4 || att.Shape[0] != batch || att.Shape[1] != heads || att.Shape[2] != time || att.Shape[3] != time)
            throw new ArgumentException($"{attName}: expected [B, NH, T, T] = [{batch}, {heads}, {time}, {time}]; got {att.Shape}", attName);
        return (batch, time, headSize);
    }

    /// <summary>KVH ≥ 1 dividing NH (grouped-query attention; KVH = NH is multi-head, KVH = 1 multi-query).</summary>
    private static void CheckKeyValueHeads(int heads, int kvHeads)
    {
        if (kvHeads < 1 || heads % kvHeads != 0)
            throw new ArgumentOutOfRangeException(nameof(kvHeads), kvHeads, $"kvHeads: expected KVH ≥ 1 dividing NH = {heads}; got {kvHeads}");
    }

    private void CheckRows(Tensor t, string name, int batch, int time, int channels)
    {
        Check.Tensor(this, t, DType.F32, name);
        if (t.Shape.Rank != 3 || t.Shape[0] != batch || t.Shape[1] != time || t.Shape[2] != channels)
            throw new ArgumentException($"{name}: expected [B, T, C] = [{batch}, {time}, {channels}]; got {t.Shape}", name);
    }

    private void CheckHeads(Tensor t, string name, int batch, int heads, int time, int headSize)
    {
        ArgumentNullException.ThrowIfNull(t, name);
        Check.Tensor(this, t, DType.F32, name);
        if (t.Shape.Rank != 4 || t.Shape[0] != batch || t.Shape[1] != heads || t.Shape[2] != time || t.Shape[3] != headSize)
            throw new ArgumentException($"{name}: expected heads [B, NH, T, HS] = [{batch}, {heads}, {time}, {headSize}]; got {t.Shape}", name);
    }
}

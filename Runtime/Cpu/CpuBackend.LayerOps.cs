using System.Numerics.Tensors;
using LoraRuntime.Cpu.Primitives;

namespace LoraRuntime.Cpu;

// The cores of the layer operations (Backend.LayerOps): row and column broadcasts, column sums, head permutations,
// dropout and the finiteness scan. Nothing here allocates.
public sealed unsafe partial class CpuBackend
{
    /// <inheritdoc/>
    protected override void AddBiasCore(Tensor output, Tensor input, Tensor bias) => RowBroadcast(output, input, bias, Primitives.RowBroadcast.AddPerColumn);

    /// <inheritdoc/>
    protected override void ScaleColumnsCore(Tensor output, Tensor input, Tensor scale) =>
        RowBroadcast(output, input, scale, Primitives.RowBroadcast.MultiplyPerColumn);

    /// <inheritdoc/>
    protected override void ScaleRowsCore(Tensor output, Tensor input, Tensor scale) =>
        RowBroadcast(output, input, scale, Primitives.RowBroadcast.MultiplyPerRow);

    /// <inheritdoc/>
    protected override void ColumnSumCore(Tensor output, Tensor a, Tensor? b)
    {
        int cols = a.Shape.Last;
        var op = new ColumnSumOp { Output = F(output), A = F(a), B = b is null ? null : F(b), Rows = a.Shape.Rows, Cols = cols };
        ParallelFor<ColumnSumOp>.Run(Workers, op, cols, a.Shape.Rows, VectorGranule);
    }

    /// <summary>
    /// Fused per (batch, head) in L1 where AVX-512 is present, HS is a multiple of 16 and every query head has its own
    /// key/value head (<see cref="CausalAttentionForwardOp"/>); otherwise the composed default.
    /// </summary>
    protected override void CausalSelfAttentionForwardCore(Tensor output, Tensor att, Tensor qkv, int batch, int time, int heads, int kvHeads,
        int headSize, float scale, in AttentionScratch scratch)
    {
        if (!Fused(heads, kvHeads, headSize))
        {
            base.CausalSelfAttentionForwardCore(output, att, qkv, batch, time, heads, kvHeads, headSize, scale, scratch);
            return;
        }
        var op = new CausalAttentionForwardOp { Y = F(output), Att = F(att), Qkv = F(qkv), Time = time, Heads = heads, HeadSize = headSize, Scale = scale };
        ParallelFor<CausalAttentionForwardOp>.Run(Workers, op, (long)batch * heads, 2L * time * time * headSize);
    }

    /// <summary>The fused backward pass where the forward pass was fused (the same test of HS); otherwise the composed default.</summary>
    protected override void CausalSelfAttentionBackwardCore(Tensor dQkv, Tensor dScores, Tensor dy, Tensor qkv, Tensor att, int batch, int time,
        int heads, int kvHeads, int headSize, float scale, in AttentionScratch saved, in AttentionGradientScratch gradients)
    {
        if (!Fused(heads, kvHeads, headSize))
        {
            base.CausalSelfAttentionBackwardCore(dQkv, dScores, dy, qkv, att, batch, time, heads, kvHeads, headSize, scale, saved, gradients);
            return;
        }
        var op = new CausalAttentionBackwardOp
        {
            DQkv = F(dQkv), DScores = F(dScores), DY = F(dy), Qkv = F(qkv), Att = F(att), Time = time, Heads = heads, HeadSize = headSize, Scale = scale,
        };
        ParallelFor<CausalAttentionBackwardOp>.Run(Workers, op, (long)batch * heads, 4L * time * time * headSize);
    }

    /// <summary>The fused causal kernels' condition (a backward pass makes the same choice as its forward pass).</summary>
    private bool Fused(int heads, int kvHeads, int headSize) => FusedAttention && heads == kvHeads && CausalAttentionKernels.Supported(headSize);

    /// <summary>Fused: each (row, head) in one pass over its cached keys and values (<see cref="DecodeAttentionOp"/>); the scores stay on the stack.</summary>
    protected override void CachedAttentionCore(Tensor output, Tensor queries, Tensor cache, int cacheStride, ReadOnlySpan<DecodeAttentionRow> rows,
        int heads, int kvHeads, int headSize, float scale, int maxLength, Tensor scores)
    {
        if (!FusedAttention)
        {
            base.CachedAttentionCore(output, queries, cache, cacheStride, rows, heads, kvHeads, headSize, scale, maxLength, scores);
            return;
        }
        fixed (DecodeAttentionRow* r = rows)
        {
            var op = new DecodeAttentionOp
            {
                Output = F(output), Queries = F(queries), Cache = F(cache), Rows = r, Stride = cacheStride,
                Heads = heads, Group = heads / kvHeads, HeadSize = headSize, MaxLength = maxLength, Scale = scale,
            };
            ParallelFor<DecodeAttentionOp>.Run(Workers, op, (long)rows.Length * heads, 2L * maxLength * headSize);
        }
    }

    /// <inheritdoc/>
    protected override void SoftmaxRowsCore(Tensor buffer, long offset, int rows, int cols)
    {
        float* at = F(buffer) + offset;
        var op = new SoftmaxForwardOp { Output = at, Input = at, Cols = cols, Queries = 1, Causal = false };
        ParallelFor<SoftmaxForwardOp>.Run(Workers, op, rows, cols);
    }

    /// <inheritdoc/>
    protected override void RowNormsCore(Tensor output, Tensor input) =>
        Rows(new RowNormsOp { Output = F(output), Input = F(input), Cols = input.Shape.Last }, input);

    /// <inheritdoc/>
    protected override void DivideCore(Tensor output, Tensor a, Tensor b) =>
        Elementwise(new DivideOp { Output = F(output), A = F(a), B = F(b) }, output.Length);

    /// <inheritdoc/>
    protected override void HeadsCore(Tensor heads, Tensor rows, int column, bool split)
    {
        var op = new HeadsOp
        {
            Heads = F(heads), Rows = F(rows), Time = heads.Shape[2], HeadCount = heads.Shape[1], HeadSize = heads.Shape[3],
            Width = rows.Shape.Last, Column = column, Split = split,
        };
        ParallelFor<HeadsOp>.Run(Workers, op, rows.Shape.Rows, (long)op.HeadCount * op.HeadSize);
    }

    /// <inheritdoc/>
    protected override void DropoutCore(Tensor output, Tensor input, float probability, ulong seed, ulong firstIndex, bool accumulate)
    {
        var op = new DropoutOp
        {
            Output = F(output), Input = F(input), Seed = seed, FirstIndex = firstIndex, Threshold = DropoutThreshold(probability),
            KeepScale = 1 / (1 - probability), Accumulate = accumulate,
        };
        Elementwise(op, output.Length);
    }

    /// <inheritdoc/>
    protected override long FindNonFiniteCore(Tensor input)
    {
        float* data = F(input);
        long count = input.Length;
        const int Chunk = 1 << 16;
        for (long start = 0; start < count; start += Chunk)
        {
            var chunk = new ReadOnlySpan<float>(data + start, (int)Math.Min(Chunk, count - start));
            // The largest magnitude is NaN or infinite exactly when some element is; only then look for which.
            if (float.IsFinite(TensorPrimitives.MaxMagnitude(chunk))) continue;
            for (int i = 0; i < chunk.Length; i++)
                if (!float.IsFinite(chunk[i])) return start + i;
        }
        return -1;
    }

    private void RowBroadcast(Tensor output, Tensor input, Tensor vector, RowBroadcast kind) =>
        Rows(new RowBroadcastOp { Output = F(output), Input = F(input), Vector = F(vector), Cols = input.Shape.Last, Kind = kind }, input);
}

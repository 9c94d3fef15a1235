using LoraRuntime.Cpu.Primitives;

namespace LoraRuntime.Cpu;

// The cores of the fused primitives: each fills in its operator (Cpu/Primitives, one per file) and hands it to
// ParallelFor, which runs it on this thread or across the workers by size. Nothing here allocates.
public sealed unsafe partial class CpuBackend
{
    /// <summary>Elements per task boundary of element-wise work: whole AVX-512 vectors.</summary>
    private const int VectorGranule = 16;

    /// <inheritdoc/>
    protected override long FindIdOutsideCore(Tensor ids, int min, int max, out int value)
    {
        int* data = (int*)ids.Pointer;
        long count = ids.Length;
        if (max < min)
        {
            value = data[0];
            return 0;
        }
        for (long start = 0; start < count; start += int.MaxValue)
        {
            var chunk = new ReadOnlySpan<int>(data + start, (int)Math.Min(int.MaxValue, count - start));
            int at = chunk.IndexOfAnyExceptInRange(min, max);
            if (at >= 0)
            {
                value = chunk[at];
                return start + at;
            }
        }
        value = 0;
        return -1;
    }

    /// <inheritdoc/>
    protected override void AddCore(Tensor output, Tensor a, Tensor b) =>
        Elementwise(new AddOp { Output = F(output), A = F(a), B = F(b) }, output.Length);

    /// <inheritdoc/>
    protected override void ScaleCore(Tensor output, Tensor input, float scale) =>
        Elementwise(new ScaleOp { Output = F(output), Input = F(input), Factor = scale }, output.Length);

    /// <inheritdoc/>
    protected override void AxpyCore(Tensor y, float alpha, Tensor x) =>
        Elementwise(new AxpyOp { Y = F(y), X = F(x), Alpha = alpha }, y.Length);

    /// <inheritdoc/>
    protected override void GeluForwardCore(Tensor output, Tensor input) =>
        Elementwise(new GeluForwardOp { Output = F(output), Input = F(input) }, output.Length);

    /// <inheritdoc/>
    protected override void GeluBackwardCore(Tensor dInput, Tensor input, Tensor dOutput) =>
        Elementwise(new GeluBackwardOp { DInput = F(dInput), Input = F(input), DOutput = F(dOutput) }, dInput.Length);

    /// <inheritdoc/>
    protected override void GeluBackwardStoreCore(Tensor dInput, Tensor input, Tensor dOutput) =>
        Elementwise(new GeluBackwardOp { DInput = F(dInput), Input = F(input), DOutput = F(dOutput), Store = true }, dInput.Length);

    /// <inheritdoc/>
    protected override void SoftmaxForwardCore(Tensor output, Tensor input, bool causal)
    {
        var op = new SoftmaxForwardOp { Output = F(output), Input = F(input), Cols = input.Shape.Last, Queries = Queries(input, causal), Causal = causal };
        Rows(op, input);
    }

    /// <inheritdoc/>
    protected override void SoftmaxBackwardCore(Tensor dInput, Tensor output, Tensor dOutput, bool causal)
    {
        var op = new SoftmaxBackwardOp
        {
            DInput = F(dInput), Output = F(output), DOutput = F(dOutput), Cols = output.Shape.Last, Queries = Queries(output, causal), Causal = causal,
        };
        Rows(op, output);
    }

    /// <inheritdoc/>
    protected override void LayerNormForwardCore(Tensor output, Tensor mean, Tensor rstd, Tensor input, Tensor weight, Tensor bias, float epsilon)
    {
        var op = new LayerNormForwardOp
        {
            Output = F(output), Mean = F(mean), Rstd = F(rstd), Input = F(input), Weight = F(weight), Bias = F(bias),
            Channels = input.Shape.Last, Epsilon = epsilon,
        };
        Rows(op, input);
    }

    /// <inheritdoc/>
    protected override void LayerNormBackwardCore(Tensor dInput, Tensor dWeight, Tensor dBias, Tensor dOutput, Tensor input, Tensor weight,
        Tensor mean, Tensor rstd)
    {
        int channels = input.Shape.Last;
        var inputGradient = new LayerNormInputGradientOp
        {
            DInput = F(dInput), DOutput = F(dOutput), Input = F(input), Weight = F(weight), Mean = F(mean), Rstd = F(rstd), Channels = channels,
        };
        Rows(inputGradient, input);
        var parameterGradient = new LayerNormParameterGradientOp
        {
            DWeight = F(dWeight), DBias = F(dBias), DOutput = F(dOutput), Input = F(input), Mean = F(mean), Rstd = F(rstd),
            Rows = input.Shape.Rows, Channels = channels,
        };
        ParallelFor<LayerNormParameterGradientOp>.Run(Workers, parameterGradient, channels, input.Shape.Rows, VectorGranule);
    }

    /// <inheritdoc/>
    protected override void CrossEntropyForwardCore(Tensor losses, Tensor probs, Tensor logits, Tensor targets)
    {
        var op = new CrossEntropyForwardOp
        {
            Losses = F(losses), Probs = F(probs), Logits = F(logits), Targets = (int*)targets.Pointer, Classes = logits.Shape.Last,
        };
        Rows(op, logits);
    }

    /// <inheritdoc/>
    protected override void CrossEntropyBackwardCore(Tensor dLogits, Tensor dLosses, Tensor probs, Tensor targets)
    {
        var op = new CrossEntropyBackwardOp
        {
            DLogits = F(dLogits), DLosses = F(dLosses), Probs = F(probs), Targets = (int*)targets.Pointer, Classes = probs.Shape.Last,
        };
        Rows(op, probs);
    }

    /// <inheritdoc/>
    protected override void EmbeddingForwardCore(Tensor output, Tensor ids, Tensor table)
    {
        var op = new EmbeddingForwardOp { Output = F(output), Table = F(table), Ids = (int*)ids.Pointer, Channels = table.Shape.Last };
        Rows(op, output);
    }

    /// <inheritdoc/>
    protected override void EmbeddingBackwardCore(Tensor dTable, Tensor dOutput, Tensor ids)
    {
        int channels = dTable.Shape.Last;
        var op = new EmbeddingBackwardOp { DTable = F(dTable), DOutput = F(dOutput), Ids = (int*)ids.Pointer, Count = ids.Length, Channels = channels };
        ParallelFor<EmbeddingBackwardOp>.Run(Workers, op, channels, ids.Length, VectorGranule);
    }

    /// <inheritdoc/>
    protected override void AdamWStepCore(Tensor parameters, Tensor gradients, Tensor m, Tensor v, float learningRate, float beta1,
        float beta2, float epsilon, float weightDecay, int step)
    {
        var op = AdamWOp.Create(learningRate, beta1, beta2, epsilon, weightDecay, step);
        op.Parameters = F(parameters);
        op.Gradients = F(gradients);
        op.M = F(m);
        op.V = F(v);
        // Four streams, a square root and a division per element: each weighs about as much as eight elements of an
        // add, so a 128×128 matrix (16 Ki) is worth sharing out where an add of that length is not.
        ParallelFor<AdamWOp>.Run(Workers, op, parameters.Length, AdamWElementCost, VectorGranule);
    }

    /// <summary>One AdamW element's work in units of an element-wise add's (see <see cref="ParallelPlan.MinParallelElements"/>).</summary>
    private const int AdamWElementCost = 8;

    /// <summary>An element-wise operator over <paramref name="length"/> elements.</summary>
    private void Elementwise<TOp>(TOp op, long length) where TOp : struct, IRangeOp =>
        ParallelFor<TOp>.Run(Workers, op, length, 1, VectorGranule);

    /// <summary>A row-wise operator over the rows of <paramref name="matrix"/> (all dimensions but the last).</summary>
    private void Rows<TOp>(TOp op, Tensor matrix) where TOp : struct, IRangeOp =>
        ParallelFor<TOp>.Run(Workers, op, matrix.Shape.Rows, matrix.Shape.Last);

    /// <summary>T, the query rows per matrix of a causal softmax (1 when not causal, where it is unused).</summary>
    private static int Queries(Tensor t, bool causal) => causal ? t.Shape[-2] : 1;
}

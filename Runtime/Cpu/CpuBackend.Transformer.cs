using LoraRuntime.Cpu.Primitives;

namespace LoraRuntime.Cpu;

// The cores of the Llama-family operations (Backend.Transformer): RMS norm, gated SiLU, rotary embeddings.
public sealed unsafe partial class CpuBackend
{
    /// <inheritdoc/>
    protected override void RmsNormForwardCore(Tensor output, Tensor rstd, Tensor input, Tensor weight, float epsilon) =>
        Rows(new RmsNormForwardOp { Output = F(output), Rstd = F(rstd), Input = F(input), Weight = F(weight), Channels = input.Shape.Last, Epsilon = epsilon },
            input);

    /// <inheritdoc/>
    protected override void RmsNormBackwardCore(Tensor dInput, Tensor dWeight, Tensor dOutput, Tensor input, Tensor weight, Tensor rstd)
    {
        int channels = input.Shape.Last;
        Rows(new RmsNormInputGradientOp { DInput = F(dInput), DOutput = F(dOutput), Input = F(input), Weight = F(weight), Rstd = F(rstd), Channels = channels },
            input);
        var weightGradient = new RmsNormWeightGradientOp
        {
            DWeight = F(dWeight), DOutput = F(dOutput), Input = F(input), Rstd = F(rstd), Rows = input.Shape.Rows, Channels = channels,
        };
        ParallelFor<RmsNormWeightGradientOp>.Run(Workers, weightGradient, channels, input.Shape.Rows, VectorGranule);
    }

    /// <inheritdoc/>
    protected override void GatedSiluForwardCore(Tensor output, Tensor input) =>
        Rows(new GatedSiluForwardOp { Output = F(output), Input = F(input), Width = output.Shape.Last }, output);

    /// <inheritdoc/>
    protected override void GatedSiluBackwardCore(Tensor dInput, Tensor input, Tensor dOutput) =>
        Rows(new GatedSiluBackwardOp { DInput = F(dInput), Input = F(input), DOutput = F(dOutput), Width = dOutput.Shape.Last }, dOutput);

    /// <inheritdoc/>
    protected override void RotaryCore(Tensor rows, Tensor positions, int heads, int headSize, Tensor cos, Tensor sin, bool inverse)
    {
        var op = new RotaryOp
        {
            Rows = F(rows), Cos = F(cos), Sin = F(sin), Positions = (int*)positions.Pointer, RowStride = rows.Shape.Last,
            Heads = heads, HeadSize = headSize, Half = cos.Shape[1], Inverse = inverse,
        };
        ParallelFor<RotaryOp>.Run(Workers, op, rows.Shape.Rows, 3L * heads * cos.Shape[1]);
    }

    /// <inheritdoc/>
    protected override void HeadRmsNormForwardCore(Tensor rows, Tensor rstd, int firstHead, int heads, int headSize, Tensor weight, float epsilon)
    {
        var op = new HeadRmsNormForwardOp
        {
            Rows = F(rows), Rstd = F(rstd), Weight = F(weight), RowStride = rows.Shape.Last, FirstHead = firstHead, Heads = heads, HeadSize = headSize,
            Epsilon = epsilon,
        };
        ParallelFor<HeadRmsNormForwardOp>.Run(Workers, op, rows.Shape.Rows * heads, 2L * headSize);
    }

    /// <inheritdoc/>
    protected override void HeadRmsNormBackwardCore(Tensor dRows, Tensor dWeight, Tensor input, Tensor weight, Tensor rstd, int firstHead, int heads,
        int headSize)
    {
        long rows = input.Shape.Rows, stride = input.Shape.Last;
        var weightGradient = new HeadRmsNormWeightGradientOp
        {
            DWeight = F(dWeight), DRows = F(dRows), Input = F(input), Rstd = F(rstd), RowStride = stride, Rows = rows, FirstHead = firstHead, Heads = heads,
            HeadSize = headSize,
        };
        ParallelFor<HeadRmsNormWeightGradientOp>.Run(Workers, weightGradient, headSize, rows * heads);
        var inputGradient = new HeadRmsNormInputGradientOp
        {
            DRows = F(dRows), Input = F(input), Weight = F(weight), Rstd = F(rstd), RowStride = stride, FirstHead = firstHead, Heads = heads, HeadSize = headSize,
        };
        ParallelFor<HeadRmsNormInputGradientOp>.Run(Workers, inputGradient, rows * heads, 3L * headSize);
    }
}

using System.Numerics.Tensors;

namespace LoraRuntime.Cpu.Primitives;

/// <summary>output = scale · input.</summary>
internal unsafe struct ScaleOp : IRangeOp
{
    public float* Output, Input;
    public float Factor;

    public readonly void Run(long start, long end) =>
        TensorPrimitives.Multiply(Spans.Read(Input, start, end), Factor, Spans.Write(Output, start, end));
}

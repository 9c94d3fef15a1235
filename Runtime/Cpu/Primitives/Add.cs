using System.Numerics.Tensors;

namespace LoraRuntime.Cpu.Primitives;

/// <summary>output = a + b.</summary>
internal unsafe struct AddOp : IRangeOp
{
    public float* Output, A, B;

    public readonly void Run(long start, long end) =>
        TensorPrimitives.Add(Spans.Read(A, start, end), Spans.Read(B, start, end), Spans.Write(Output, start, end));
}

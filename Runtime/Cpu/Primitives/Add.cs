using System.Numerics.Tensors;

namespace LoraRuntime.Cpu.Primitives;

/// <summary>output = a + b.</summary>
internal unsafe struct AddOp : IRangeOp
{
    public float* Output, A, B;

    public readonly void Run(long start, long end) =>
        TensorPrimitives.Add(Spans.Read(A, start, end), Spans.Read(B, start, end), Spans.Write(Output, start, end));
}

/// <summary>output = value over a range (a memory-bound fill, shared out like the other element-wise operators).</summary>
internal unsafe struct FillOp : IRangeOp
{
    public float* Output;
    public float Value;

    public readonly void Run(long start, long end) => Spans.Write(Output, start, end).Fill(Value);
}

using System.Numerics.Tensors;

namespace LoraRuntime.Cpu.Primitives;

/// <summary>y += alpha · x.</summary>
internal unsafe struct AxpyOp : IRangeOp
{
    public float* Y, X;
    public float Alpha;

    public readonly void Run(long start, long end) =>
        TensorPrimitives.MultiplyAdd(Spans.Read(X, start, end), Alpha, Spans.Read(Y, start, end), Spans.Write(Y, start, end));
}

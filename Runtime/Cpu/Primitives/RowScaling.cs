using System.Numerics.Tensors;

namespace LoraRuntime.Cpu.Primitives;

/// <summary>Row-wise broadcasts of a vector: Output[r, :] = Input[r, :] + Vector, or ⊙ Vector, or · Vector[r].</summary>
internal unsafe struct RowBroadcastOp : IRangeOp
{
    public float* Output, Input, Vector;
    public int Cols;
    public RowBroadcast Kind;

    public readonly void Run(long start, long end)
    {
        var vector = new ReadOnlySpan<float>(Vector, Cols);
        for (long r = start; r < end; r++)
        {
            var input = new ReadOnlySpan<float>(Input + r * Cols, Cols);
            var output = new Span<float>(Output + r * Cols, Cols);
            switch (Kind)
            {
                case RowBroadcast.AddPerColumn: TensorPrimitives.Add(input, vector, output); break;
                case RowBroadcast.MultiplyPerColumn: TensorPrimitives.Multiply(input, vector, output); break;
                default: TensorPrimitives.Multiply(input, Vector[r], output); break;
            }
        }
    }
}

/// <summary>Which broadcast <see cref="RowBroadcastOp"/> applies.</summary>
internal enum RowBroadcast
{
    /// <summary>Add a per-column vector (a bias).</summary>
    AddPerColumn,
    /// <summary>Multiply by a per-column vector.</summary>
    MultiplyPerColumn,
    /// <summary>Multiply each row by its own scalar.</summary>
    MultiplyPerRow,
}

/// <summary>Output[r] = ‖Input[r, :]‖₂.</summary>
internal unsafe struct RowNormsOp : IRangeOp
{
    public float* Output, Input;
    public int Cols;

    public readonly void Run(long start, long end)
    {
        for (long r = start; r < end; r++) Output[r] = TensorPrimitives.Norm(new ReadOnlySpan<float>(Input + r * Cols, Cols));
    }
}

/// <summary>Output = A / B.</summary>
internal unsafe struct DivideOp : IRangeOp
{
    public float* Output, A, B;

    public readonly void Run(long start, long end) =>
        TensorPrimitives.Divide(Spans.Read(A, start, end), Spans.Read(B, start, end), Spans.Write(Output, start, end));
}

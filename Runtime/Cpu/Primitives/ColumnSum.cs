using System.Numerics.Tensors;

namespace LoraRuntime.Cpu.Primitives;

/// <summary>
/// Output[j] += Σ_rows A[r, j] (or Σ A[r, j]·B[r, j] when B is set), parallel over blocks of columns so that no two
/// tasks write the same element and every column adds its rows in the same order (deterministic on any thread count).
/// </summary>
internal unsafe struct ColumnSumOp : IRangeOp
{
    public float* Output, A, B;
    public long Rows;
    public int Cols;

    public readonly void Run(long start, long end)
    {
        var output = Spans.Write(Output, start, end);
        for (long r = 0; r < Rows; r++)
        {
            long at = r * Cols;
            if (B == null) TensorPrimitives.Add(output, Spans.Read(A + at, start, end), output);
            else TensorPrimitives.MultiplyAdd(Spans.Read(A + at, start, end), Spans.Read(B + at, start, end), output, output);
        }
    }
}

using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace LoraRuntime.Cpu.Primitives;

/// <summary>The numerically stable softmax of one row, shared by the softmax and cross-entropy operators.</summary>
internal static unsafe class Softmax
{
    /// <summary>
    /// output[0..count) = exp(input − max) / Σ exp(input − max); returns the sum and the max (cross-entropy's
    /// log-sum-exp). output may be input itself.
    /// </summary>
    public static float Row(float* output, float* input, int count, out float max)
    {
        max = TensorPrimitives.Max(new ReadOnlySpan<float>(input, count));
        float sum = SimdLoop.Sum(new ExpShiftOp { Output = output, Input = input, Shift = max }, 0, count);
        var probs = new Span<float>(output, count);
        TensorPrimitives.Multiply(probs, 1 / sum, probs);
        return sum;
    }

    /// <summary>
    /// How many leading columns row <paramref name="row"/> sees: all of them, or, causally, with the
    /// <paramref name="queries"/> rows of each matrix being the last positions of <paramref name="cols"/>, i + 1 + (cols − T).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Visible(long row, int queries, int cols, bool causal) =>
        causal ? (int)(row % queries) + 1 + (cols - queries) : cols;

    /// <summary>output = exp(input − shift), summed.</summary>
    private struct ExpShiftOp : ISimdSum
    {
        public float* Output, Input;
        public float Shift;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly TV Invoke<TV>(long i) where TV : struct, ISimd<TV>
        {
            var e = TV.Exp(TV.Load(Input + i) - TV.Splat(Shift));
            e.Store(Output + i);
            return e;
        }
    }
}

/// <summary>Row-wise softmax, optionally causal; masked columns are written as 0.</summary>
internal unsafe struct SoftmaxForwardOp : IRangeOp
{
    public float* Output, Input;
    public int Cols, Queries;
    public bool Causal;

    public readonly void Run(long start, long end)
    {
        for (long r = start; r < end; r++)
        {
            float* output = Output + r * Cols;
            int visible = Softmax.Visible(r, Queries, Cols, Causal);
            Softmax.Row(output, Input + r * Cols, visible, out _);
            new Span<float>(output + visible, Cols - visible).Clear();
        }
    }
}

/// <summary>dInput += p ⊙ (dOutput − Σ p ⊙ dOutput) over each row's visible columns.</summary>
internal unsafe struct SoftmaxBackwardOp : IRangeOp
{
    public float* DInput, Output, DOutput;
    public int Cols, Queries;
    public bool Causal;

    public readonly void Run(long start, long end)
    {
        for (long r = start; r < end; r++)
        {
            long at = r * Cols;
            int visible = Softmax.Visible(r, Queries, Cols, Causal);
            float dot = TensorPrimitives.Dot(new ReadOnlySpan<float>(Output + at, visible), new ReadOnlySpan<float>(DOutput + at, visible));
            SimdLoop.Run(new RowOp { DInput = DInput + at, P = Output + at, DOutput = DOutput + at, Dot = dot }, 0, visible);
        }
    }

    private struct RowOp : ISimdOp
    {
        public float* DInput, P, DOutput;
        public float Dot;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Invoke<TV>(long i) where TV : struct, ISimd<TV>
        {
            var grad = TV.MultiplyAdd(TV.Load(P + i), TV.Load(DOutput + i) - TV.Splat(Dot), TV.Load(DInput + i));
            grad.Store(DInput + i);
        }
    }
}

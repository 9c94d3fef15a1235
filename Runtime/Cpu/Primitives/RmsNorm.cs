using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace LoraRuntime.Cpu.Primitives;

/// <summary>RMS norm over rows of C: y = x·rstd ⊙ w with rstd = 1/√(mean(x²) + ε) (Llama's, in float32).</summary>
internal unsafe struct RmsNormForwardOp : IRangeOp
{
    public float* Output, Rstd, Input, Weight;
    public int Channels;
    public float Epsilon;

    public readonly void Run(long start, long end)
    {
        for (long r = start; r < end; r++)
        {
            var x = new ReadOnlySpan<float>(Input + r * Channels, Channels);
            float rstd = 1 / MathF.Sqrt(TensorPrimitives.Dot(x, x) / Channels + Epsilon);
            SimdLoop.Run(new ScaleOp { Output = Output + r * Channels, X = Input + r * Channels, Weight = Weight, Rstd = rstd }, 0, Channels);
            Rstd[r] = rstd;
        }
    }

    private struct ScaleOp : ISimdOp
    {
        public float* Output, X, Weight;
        public float Rstd;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Invoke<TV>(long i) where TV : struct, ISimd<TV> =>
            (TV.Load(X + i) * TV.Splat(Rstd) * TV.Load(Weight + i)).Store(Output + i);
    }
}

/// <summary>
/// The input gradient of RMS norm, row by row: with n = x·rstd and g = w ⊙ dy, dx += (g − n·mean(g ⊙ n))·rstd.
/// </summary>
internal unsafe struct RmsNormInputGradientOp : IRangeOp
{
    public float* DInput, DOutput, Input, Weight, Rstd;
    public int Channels;

    public readonly void Run(long start, long end)
    {
        for (long r = start; r < end; r++)
        {
            long at = r * Channels;
            var row = new RowOp { DInput = DInput + at, DOutput = DOutput + at, X = Input + at, Weight = Weight, Rstd = Rstd[r] };
            row.MeanGN = SimdLoop.Sum(row, 0, Channels) / Channels;
            SimdLoop.Run(row, 0, Channels);
        }
    }

    /// <summary>As a sum: g ⊙ n. As an update: dx += (g − n·mean(g ⊙ n))·rstd.</summary>
    private struct RowOp : ISimdSum, ISimdOp
    {
        public float* DInput, DOutput, X, Weight;
        public float Rstd, MeanGN;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        readonly TV ISimdSum.Invoke<TV>(long i) => Gradient<TV>(i) * Normalized<TV>(i);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        readonly void ISimdOp.Invoke<TV>(long i)
        {
            var centred = Gradient<TV>(i) - Normalized<TV>(i) * TV.Splat(MeanGN);
            TV.MultiplyAdd(centred, TV.Splat(Rstd), TV.Load(DInput + i)).Store(DInput + i);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private readonly TV Gradient<TV>(long i) where TV : struct, ISimd<TV> => TV.Load(Weight + i) * TV.Load(DOutput + i);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private readonly TV Normalized<TV>(long i) where TV : struct, ISimd<TV> => TV.Load(X + i) * TV.Splat(Rstd);
    }
}

/// <summary>
/// dWeight += Σ_rows n ⊙ dy, parallel over blocks of columns so that no two tasks write the same element and every
/// column sums its rows in the same order (deterministic).
/// </summary>
internal unsafe struct RmsNormWeightGradientOp : IRangeOp
{
    public float* DWeight, DOutput, Input, Rstd;
    public long Rows;
    public int Channels;

    public readonly void Run(long start, long end)
    {
        for (long r = 0; r < Rows; r++)
        {
            long at = r * Channels;
            SimdLoop.Run(new RowOp { DWeight = DWeight, DOutput = DOutput + at, X = Input + at, Rstd = Rstd[r] }, start, end);
        }
    }

    private struct RowOp : ISimdOp
    {
        public float* DWeight, DOutput, X;
        public float Rstd;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Invoke<TV>(long i) where TV : struct, ISimd<TV> =>
            TV.MultiplyAdd(TV.Load(X + i) * TV.Splat(Rstd), TV.Load(DOutput + i), TV.Load(DWeight + i)).Store(DWeight + i);
    }
}

/// <summary>
/// RMS norm of heads inside rows, in place (Qwen3's q/k norms): item (row, head) normalises the HS floats of head
/// <see cref="FirstHead"/> + head of the row and keeps its rstd.
/// </summary>
internal unsafe struct HeadRmsNormForwardOp : IRangeOp
{
    public float* Rows, Rstd, Weight;
    public long RowStride;
    public int FirstHead, Heads, HeadSize;
    public float Epsilon;

    public readonly void Run(long start, long end)
    {
        for (long item = start; item < end; item++)
        {
            long r = item / Heads;
            float* x = Rows + r * RowStride + (long)(FirstHead + item % Heads) * HeadSize;
            var span = new ReadOnlySpan<float>(x, HeadSize);
            float rstd = 1 / MathF.Sqrt(TensorPrimitives.Dot(span, span) / HeadSize + Epsilon);
            for (int i = 0; i < HeadSize; i++) x[i] = x[i] * rstd * Weight[i];
            Rstd[item] = rstd;
        }
    }
}

/// <summary>
/// Its input gradient, in place on the gradient rows: with n = x·rstd and g = w ⊙ dy, dy ← (g − n·mean(g ⊙ n))·rstd.
/// </summary>
internal unsafe struct HeadRmsNormInputGradientOp : IRangeOp
{
    public float* DRows, Input, Weight, Rstd;
    public long RowStride;
    public int FirstHead, Heads, HeadSize;

    public readonly void Run(long start, long end)
    {
        for (long item = start; item < end; item++)
        {
            long at = item / Heads * RowStride + (long)(FirstHead + item % Heads) * HeadSize;
            float* dy = DRows + at, x = Input + at;
            float rstd = Rstd[item], gn = 0;
            for (int i = 0; i < HeadSize; i++) gn += Weight[i] * dy[i] * x[i] * rstd;
            float meanGN = gn / HeadSize;
            for (int i = 0; i < HeadSize; i++) dy[i] = (Weight[i] * dy[i] - x[i] * rstd * meanGN) * rstd;
        }
    }
}

/// <summary>dWeight += Σ_(row, head) n ⊙ dy, one column per item and every (row, head) in order (deterministic); before the input pass overwrites dy.</summary>
internal unsafe struct HeadRmsNormWeightGradientOp : IRangeOp
{
    public float* DWeight, DRows, Input, Rstd;
    public long RowStride, Rows;
    public int FirstHead, Heads, HeadSize;

    public readonly void Run(long start, long end)
    {
        for (long c = start; c < end; c++)
        {
            float sum = DWeight[c];
            for (long item = 0; item < Rows * Heads; item++)
            {
                long at = item / Heads * RowStride + (long)(FirstHead + item % Heads) * HeadSize + c;
                sum += Input[at] * Rstd[item] * DRows[at];
            }
            DWeight[c] = sum;
        }
    }
}

using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace LoraRuntime.Cpu.Primitives;

/// <summary>
/// Layer norm over rows of C: y = (x − mean)·rstd·w + b. The variance is taken in a second pass over
/// (x − mean)², which does not cancel the way E[x²] − mean² does.
/// </summary>
internal unsafe struct LayerNormForwardOp : IRangeOp
{
    public float* Output, Mean, Rstd, Input, Weight, Bias;
    public int Channels;
    public float Epsilon;

    public readonly void Run(long start, long end)
    {
        for (long r = start; r < end; r++)
        {
            float* x = Input + r * Channels;
            float mean = TensorPrimitives.Sum(new ReadOnlySpan<float>(x, Channels)) / Channels;
            float variance = SimdLoop.Sum(new SquaredDeviationOp { X = x, Mean = mean }, 0, Channels) / Channels;
            float rstd = 1 / MathF.Sqrt(variance + Epsilon);
            SimdLoop.Run(new NormalizeOp { Output = Output + r * Channels, X = x, Weight = Weight, Bias = Bias, Mean = mean, Rstd = rstd }, 0, Channels);
            Mean[r] = mean;
            Rstd[r] = rstd;
        }
    }

    private struct SquaredDeviationOp : ISimdSum
    {
        public float* X;
        public float Mean;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly TV Invoke<TV>(long i) where TV : struct, ISimd<TV>
        {
            var d = TV.Load(X + i) - TV.Splat(Mean);
            return d * d;
        }
    }

    private struct NormalizeOp : ISimdOp
    {
        public float* Output, X, Weight, Bias;
        public float Mean, Rstd;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Invoke<TV>(long i) where TV : struct, ISimd<TV>
        {
            var norm = (TV.Load(X + i) - TV.Splat(Mean)) * TV.Splat(Rstd);
            TV.MultiplyAdd(norm, TV.Load(Weight + i), TV.Load(Bias + i)).Store(Output + i);
        }
    }
}

/// <summary>
/// The input gradient of layer norm, row by row (rows are independent): with n = (x − mean)·rstd and g = w ⊙ dy,
/// dx += (g − mean(g) − n·mean(g ⊙ n))·rstd.
/// </summary>
internal unsafe struct LayerNormInputGradientOp : IRangeOp
{
    public float* DInput, DOutput, Input, Weight, Mean, Rstd;
    public int Channels;

    public readonly void Run(long start, long end)
    {
        for (long r = start; r < end; r++)
        {
            long at = r * Channels;
            var row = new RowOp { DInput = DInput + at, DOutput = DOutput + at, X = Input + at, Weight = Weight, Mean = Mean[r], Rstd = Rstd[r] };
            float meanG = TensorPrimitives.Dot(new ReadOnlySpan<float>(Weight, Channels), new ReadOnlySpan<float>(DOutput + at, Channels)) / Channels;
            row.MeanGN = SimdLoop.Sum(row, 0, Channels) / Channels;
            row.MeanG = meanG;
            SimdLoop.Run(row, 0, Channels);
        }
    }

    /// <summary>As a sum: g ⊙ n. As an update: dx += (g − mean(g) − n·mean(g ⊙ n))·rstd.</summary>
    private struct RowOp : ISimdSum, ISimdOp
    {
        public float* DInput, DOutput, X, Weight;
        public float Mean, Rstd, MeanG, MeanGN;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        readonly TV ISimdSum.Invoke<TV>(long i) => Gradient<TV>(i) * Normalized<TV>(i);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        readonly void ISimdOp.Invoke<TV>(long i)
        {
            var centred = Gradient<TV>(i) - TV.MultiplyAdd(Normalized<TV>(i), TV.Splat(MeanGN), TV.Splat(MeanG));
            TV.MultiplyAdd(centred, TV.Splat(Rstd), TV.Load(DInput + i)).Store(DInput + i);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private readonly TV Gradient<TV>(long i) where TV : struct, ISimd<TV> => TV.Load(Weight + i) * TV.Load(DOutput + i);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private readonly TV Normalized<TV>(long i) where TV : struct, ISimd<TV> => (TV.Load(X + i) - TV.Splat(Mean)) * TV.Splat(Rstd);
    }
}

/// <summary>
/// dWeight += Σ_rows n ⊙ dy and dBias += Σ_rows dy, parallel over blocks of columns so that no two tasks write the
/// same element and every column sums its rows in the same order (deterministic).
/// </summary>
internal unsafe struct LayerNormParameterGradientOp : IRangeOp
{
    public float* DWeight, DBias, DOutput, Input, Mean, Rstd;
    public long Rows;
    public int Channels;

    public readonly void Run(long start, long end)
    {
        for (long r = 0; r < Rows; r++)
        {
            long at = r * Channels;
            SimdLoop.Run(new RowOp { DWeight = DWeight, DBias = DBias, DOutput = DOutput + at, X = Input + at, Mean = Mean[r], Rstd = Rstd[r] }, start, end);
        }
    }

    private struct RowOp : ISimdOp
    {
        public float* DWeight, DBias, DOutput, X;
        public float Mean, Rstd;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Invoke<TV>(long i) where TV : struct, ISimd<TV>
        {
            var dy = TV.Load(DOutput + i);
            var norm = (TV.Load(X + i) - TV.Splat(Mean)) * TV.Splat(Rstd);
            TV.MultiplyAdd(norm, dy, TV.Load(DWeight + i)).Store(DWeight + i);
            (TV.Load(DBias + i) + dy).Store(DBias + i);
        }
    }
}

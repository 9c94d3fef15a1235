using System.Runtime.CompilerServices;

namespace LoraRuntime.Cpu.Primitives;

/// <summary>
/// Rotary position embeddings in Hugging Face's rotate-half convention, in place: for each row, the first
/// <see cref="Heads"/> heads of <see cref="HeadSize"/> floats, and in each the first 2·<see cref="Half"/> dimensions
/// (the rest pass through): x[i] ← x[i]·cos − x[i + half]·sin, x[i + half] ← x[i + half]·cos + x[i]·sin, with cos and
/// sin of the row's position and frequency i. <see cref="Inverse"/> rotates by −θ (the backward pass: the rotation's
/// transpose).
/// </summary>
internal unsafe struct RotaryOp : IRangeOp
{
    public float* Rows, Cos, Sin;
    public int* Positions;
    public long RowStride;
    public int Heads, HeadSize, Half;
    public bool Inverse;

    public readonly void Run(long start, long end)
    {
        for (long r = start; r < end; r++)
        {
            long table = (long)Positions[r] * Half;
            for (int h = 0; h < Heads; h++)
            {
                float* x = Rows + r * RowStride + (long)h * HeadSize;
                SimdLoop.Run(new PairOp { First = x, Second = x + Half, Cos = Cos + table, Sin = Sin + table, Sign = Inverse ? -1 : 1 }, 0, Half);
            }
        }
    }

    private struct PairOp : ISimdOp
    {
        public float* First, Second, Cos, Sin;
        public float Sign;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Invoke<TV>(long i) where TV : struct, ISimd<TV>
        {
            TV a = TV.Load(First + i), b = TV.Load(Second + i), c = TV.Load(Cos + i), s = TV.Load(Sin + i) * TV.Splat(Sign);
            (a * c - b * s).Store(First + i);
            TV.MultiplyAdd(a, s, b * c).Store(Second + i);
        }
    }
}

using System.Numerics;
using System.Runtime.CompilerServices;

namespace LoraRuntime.Cpu.Primitives;

/// <summary>
/// Inverted dropout with the counter-based mask of <see cref="Backend.DropoutBits"/> at FirstIndex + i: forward Output = Input ⊙ keep·s,
/// backward Output += Input ⊙ keep·s, s = 1/(1 − p). The hash runs on <see cref="Vector{T}"/> lanes of uint, the
/// tail and any vector whose indices cross a 2³² boundary on scalars; both compute the same bits.
/// </summary>
internal unsafe struct DropoutOp : IRangeOp
{
    public float* Output, Input;
    public ulong Seed, FirstIndex;
    public uint Threshold;
    public float KeepScale;
    public bool Accumulate;

    public readonly void Run(long start, long end)
    {
        long i = start;
        int count = Vector<uint>.Count;
        if (Vector.IsHardwareAccelerated)
        {
            var lanes = LaneOffsets();
            var k0 = new Vector<uint>((uint)Seed);
            var threshold = new Vector<uint>(Threshold);
            var scale = new Vector<float>(KeepScale);
            for (; end - i >= count; i += count)
            {
                ulong first = FirstIndex + (ulong)i, last = first + (ulong)(count - 1);
                if (first >> 32 != last >> 32)
                {
                    for (long j = i; j < i + count; j++) Scalar(j);
                    continue;
                }
                var x = Mix(new Vector<uint>((uint)first) + lanes ^ k0);
                x = Mix(x + new Vector<uint>((uint)(first >> 32) ^ (uint)(Seed >> 32)));
                var keep = Vector.GreaterThanOrEqual(Vector.ShiftRightLogical(x, 8), threshold).As<uint, float>();
                var value = Vector.ConditionalSelect(keep, Vector.Load(Input + i) * scale, Vector<float>.Zero);
                if (Accumulate) value += Vector.Load(Output + i);
                value.Store(Output + i);
            }
        }
        for (; i < end; i++) Scalar(i);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private readonly void Scalar(long i)
    {
        bool keep = Backend.DropoutBits(Seed, FirstIndex + (ulong)i) >> 8 >= Threshold;
        float value = keep ? Input[i] * KeepScale : 0f;
        Output[i] = Accumulate ? Output[i] + value : value;
    }

    /// <summary>The lowbias32 mix of <see cref="Backend.DropoutBits"/> on every lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<uint> Mix(Vector<uint> x)
    {
        x ^= Vector.ShiftRightLogical(x, 16);
        x *= new Vector<uint>(0x7feb352d);
        x ^= Vector.ShiftRightLogical(x, 15);
        x *= new Vector<uint>(0x846ca68b);
        x ^= Vector.ShiftRightLogical(x, 16);
        return x;
    }

    private static Vector<uint> LaneOffsets()
    {
        Span<uint> offsets = stackalloc uint[Vector<uint>.Count];
        for (int j = 0; j < offsets.Length; j++) offsets[j] = (uint)j;
        return new Vector<uint>(offsets);
    }
}

using System.Runtime.CompilerServices;

namespace LoraRuntime.Cpu.Primitives;

/// <summary>
/// SiLU and its derivative: silu(x) = x·σ(x); with e = exp(−x) and s = σ(x) = 1/(1 + e), 1 − s = e·s without
/// cancellation and silu′(x) = s·(1 + x·e·s). x is clamped to ±80 first: σ is 0 or 1 to float precision beyond, and
/// exp stays finite (no inf·0).
/// </summary>
internal static class Silu
{
    private const float Clamp = 80f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Value<TV>(TV x) where TV : struct, ISimd<TV>
    {
        var e = TV.Exp(TV.Splat(0) - TV.Clamp(x, TV.Splat(-Clamp), TV.Splat(Clamp)));
        return x / (TV.Splat(1) + e);
    }

    /// <summary>silu(x) and silu′(x).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV WithDerivative<TV>(TV x, out TV derivative) where TV : struct, ISimd<TV>
    {
        var c = TV.Clamp(x, TV.Splat(-Clamp), TV.Splat(Clamp));
        var e = TV.Exp(TV.Splat(0) - c);
        var s = TV.Splat(1) / (TV.Splat(1) + e);
        derivative = s * TV.MultiplyAdd(c * e, s, TV.Splat(1));
        return x * s;
    }
}

/// <summary>
/// The gated MLP's activation (Llama's SwiGLU) over rows of [gate | up], each I wide: output [N, I] = silu(gate) ⊙ up.
/// </summary>
internal unsafe struct GatedSiluForwardOp : IRangeOp
{
    public float* Output, Input;
    public int Width;

    public readonly void Run(long start, long end)
    {
        for (long r = start; r < end; r++)
            SimdLoop.Run(new RowOp { Output = Output + r * Width, Gate = Input + 2 * r * Width, Up = Input + (2 * r + 1) * Width }, 0, Width);
    }

    private struct RowOp : ISimdOp
    {
        public float* Output, Gate, Up;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Invoke<TV>(long i) where TV : struct, ISimd<TV> =>
            (Silu.Value(TV.Load(Gate + i)) * TV.Load(Up + i)).Store(Output + i);
    }
}

/// <summary>
/// Its backward pass, stored: dInput's gate half = dy ⊙ up ⊙ silu′(gate), its up half = dy ⊙ silu(gate).
/// </summary>
internal unsafe struct GatedSiluBackwardOp : IRangeOp
{
    public float* DInput, Input, DOutput;
    public int Width;

    public readonly void Run(long start, long end)
    {
        for (long r = start; r < end; r++)
        {
            long gate = 2 * r * Width, up = gate + Width;
            SimdLoop.Run(new RowOp
            {
                DGate = DInput + gate, DUp = DInput + up, Gate = Input + gate, Up = Input + up, DOutput = DOutput + r * Width,
            }, 0, Width);
        }
    }

    private struct RowOp : ISimdOp
    {
        public float* DGate, DUp, Gate, Up, DOutput;

        // Not inlined into SimdLoop's loop, as GELU's backward: a tree this size past the JIT's inlining budget there
        // turns its vector operators into calls.
        [MethodImpl(MethodImplOptions.NoInlining)]
        public readonly void Invoke<TV>(long i) where TV : struct, ISimd<TV>
        {
            var dy = TV.Load(DOutput + i);
            var silu = Silu.WithDerivative(TV.Load(Gate + i), out var derivative);
            (dy * TV.Load(Up + i) * derivative).Store(DGate + i);
            (dy * silu).Store(DUp + i);
        }
    }
}

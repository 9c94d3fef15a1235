using System.Runtime.CompilerServices;

namespace LoraRuntime.Cpu.Primitives;

/// <summary>
/// GELU in its tanh form. 0.5·(1 + tanh(u)) is the logistic σ(2u), so GELU(x) = x·σ(2u) with
/// u = √(2/π)·(x + 0.044715·x³): one exp instead of a tanh, and no cancellation in 1 + tanh(u) for negative x.
/// </summary>
internal static class Gelu
{
    private const float Sqrt2OverPi = 0.7978845608028654f;
    private const float Cubic = 0.044715f;

    /// <summary>
    /// Beyond ±10, GELU′ is 0 or 1 to float precision (|error| &lt; 1e-35), and clamping there keeps exp(−2u) finite
    /// and x³ from overflowing into inf·0.
    /// </summary>
    private const float DerivativeClamp = 10f;

    /// <summary>s = σ(2u(x)) and e = exp(−2u), so that 1 − s = e·s without cancellation. e = inf gives s = 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Sigmoid<TV>(TV x, out TV e) where TV : struct, ISimd<TV>
    {
        var minusTwoU = x * TV.MultiplyAdd(x * x, TV.Splat(-2 * Sqrt2OverPi * Cubic), TV.Splat(-2 * Sqrt2OverPi));
        e = TV.Exp(minusTwoU);
        return TV.Splat(1) / (TV.Splat(1) + e);
    }

    /// <summary>GELU′(x) = s·(1 + 2x·(1 − s)·√(2/π)·(1 + 3·0.044715·x²)) with s = σ(2u).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Derivative<TV>(TV x) where TV : struct, ISimd<TV>
    {
        x = TV.Clamp(x, TV.Splat(-DerivativeClamp), TV.Splat(DerivativeClamp));
        var s = Sigmoid(x, out var e);
        var du = TV.MultiplyAdd(x * x, TV.Splat(2 * Sqrt2OverPi * 3 * Cubic), TV.Splat(2 * Sqrt2OverPi));
        return s * TV.MultiplyAdd(x * (e * s), du, TV.Splat(1));
    }
}

/// <summary>output = GELU(input).</summary>
internal unsafe struct GeluForwardOp : IRangeOp, ISimdOp
{
    public float* Output, Input;

    public readonly void Run(long start, long end) => SimdLoop.Run(this, start, end);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly void Invoke<TV>(long i) where TV : struct, ISimd<TV>
    {
        var x = TV.Load(Input + i);
        (x * Gelu.Sigmoid(x, out _)).Store(Output + i);
    }
}

/// <summary>dInput += GELU′(input) · dOutput, or dInput = that product (<see cref="Store"/>).</summary>
internal unsafe struct GeluBackwardOp : IRangeOp, ISimdOp
{
    public float* DInput, Input, DOutput;
    public bool Store;

    public readonly void Run(long start, long end) => SimdLoop.Run(this, start, end);

    // Deliberately not inlined into SimdLoop's loop. Inlined there, this tree of about twenty vector operations
    // exceeds the JIT's inlining budget (which scales with the size of the tiny loop method), and the operators it
    // gives up on become calls that pass 64-byte vectors through memory: 25× slower (6.1 ms against 0.24 ms at
    // 768×512). As the root of its own compilation it inlines whole; one call per vector costs little beside the exp.
    [MethodImpl(MethodImplOptions.NoInlining)]
    public readonly void Invoke<TV>(long i) where TV : struct, ISimd<TV>
    {
        var derivative = Gelu.Derivative(TV.Load(Input + i));
        var grad = Store ? derivative * TV.Load(DOutput + i) : TV.MultiplyAdd(derivative, TV.Load(DOutput + i), TV.Load(DInput + i));
        grad.Store(DInput + i);
    }
}

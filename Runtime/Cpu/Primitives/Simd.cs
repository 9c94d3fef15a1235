using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace LoraRuntime.Cpu.Primitives;

/// <summary>
/// A float vector of one width. The fused operators are written once, generic over this interface, and the JIT
/// compiles one specialised copy per width (the role <c>ISimdVector</c> plays inside System.Numerics.Tensors, which
/// .NET 10 does not expose). <see cref="Simd1"/> is the scalar width that finishes the tails.
/// </summary>
internal unsafe interface ISimd<TSelf> where TSelf : struct, ISimd<TSelf>
{
    /// <summary>Lanes per vector.</summary>
    static abstract int Count { get; }

    /// <summary>True when this width runs in hardware (otherwise the driver skips it).</summary>
    static abstract bool IsAccelerated { get; }

    static abstract TSelf Load(float* source);
    static abstract TSelf Splat(float value);
    static abstract TSelf operator +(TSelf a, TSelf b);
    static abstract TSelf operator -(TSelf a, TSelf b);
    static abstract TSelf operator *(TSelf a, TSelf b);
    static abstract TSelf operator /(TSelf a, TSelf b);

    /// <summary>a·b + c, fused where the hardware has FMA.</summary>
    static abstract TSelf MultiplyAdd(TSelf a, TSelf b, TSelf c);
    /// <summary>x limited to [min, max] (NaN handling is the platform's).</summary>
    static abstract TSelf Clamp(TSelf x, TSelf min, TSelf max);
    static abstract TSelf Exp(TSelf x);
    static abstract TSelf Sqrt(TSelf x);

    void Store(float* destination);

    /// <summary>The sum of the lanes.</summary>
    float Sum();
}

/// <summary>One float: the scalar tail of every operator.</summary>
internal readonly unsafe struct Simd1(float value) : ISimd<Simd1>
{
    private readonly float _v = value;
    public static int Count => 1;
    public static bool IsAccelerated => true;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd1 Load(float* source) => new(*source);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd1 Splat(float value) => new(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd1 operator +(Simd1 a, Simd1 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd1 operator -(Simd1 a, Simd1 b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd1 operator *(Simd1 a, Simd1 b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd1 operator /(Simd1 a, Simd1 b) => new(a._v / b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd1 MultiplyAdd(Simd1 a, Simd1 b, Simd1 c) => new(float.MultiplyAddEstimate(a._v, b._v, c._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd1 Clamp(Simd1 x, Simd1 min, Simd1 max) => new(MathF.Max(min._v, MathF.Min(x._v, max._v)));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd1 Exp(Simd1 x) => new(MathF.Exp(x._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd1 Sqrt(Simd1 x) => new(MathF.Sqrt(x._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Store(float* destination) => *destination = _v;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public float Sum() => _v;
}

// The three hardware widths differ only in the vector type: one line per member keeps each a thin wrapper.

/// <summary>A <see cref="Vector128{T}"/> of floats (SSE, NEON).</summary>
internal readonly unsafe struct Simd128(Vector128<float> value) : ISimd<Simd128>
{
    private readonly Vector128<float> _v = value;
    public static int Count => Vector128<float>.Count;
    public static bool IsAccelerated => Vector128.IsHardwareAccelerated;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Load(float* source) => new(Vector128.Load(source));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Splat(float value) => new(Vector128.Create(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 operator +(Simd128 a, Simd128 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 operator -(Simd128 a, Simd128 b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 operator *(Simd128 a, Simd128 b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 operator /(Simd128 a, Simd128 b) => new(a._v / b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 MultiplyAdd(Simd128 a, Simd128 b, Simd128 c) => new(Vector128.MultiplyAddEstimate(a._v, b._v, c._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Clamp(Simd128 x, Simd128 min, Simd128 max) => new(Vector128.ClampNative(x._v, min._v, max._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Exp(Simd128 x) => new(Vector128.Exp(x._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Sqrt(Simd128 x) => new(Vector128.Sqrt(x._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Store(float* destination) => _v.Store(destination);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public float Sum() => Vector128.Sum(_v);
}

/// <summary>A <see cref="Vector256{T}"/> of floats (AVX2).</summary>
internal readonly unsafe struct Simd256(Vector256<float> value) : ISimd<Simd256>
{
    private readonly Vector256<float> _v = value;
    public static int Count => Vector256<float>.Count;
    public static bool IsAccelerated => Vector256.IsHardwareAccelerated;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Load(float* source) => new(Vector256.Load(source));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Splat(float value) => new(Vector256.Create(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 operator +(Simd256 a, Simd256 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 operator -(Simd256 a, Simd256 b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 operator *(Simd256 a, Simd256 b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 operator /(Simd256 a, Simd256 b) => new(a._v / b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 MultiplyAdd(Simd256 a, Simd256 b, Simd256 c) => new(Vector256.MultiplyAddEstimate(a._v, b._v, c._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Clamp(Simd256 x, Simd256 min, Simd256 max) => new(Vector256.ClampNative(x._v, min._v, max._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Exp(Simd256 x) => new(Vector256.Exp(x._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Sqrt(Simd256 x) => new(Vector256.Sqrt(x._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Store(float* destination) => _v.Store(destination);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public float Sum() => Vector256.Sum(_v);
}

/// <summary>A <see cref="Vector512{T}"/> of floats (AVX-512).</summary>
internal readonly unsafe struct Simd512(Vector512<float> value) : ISimd<Simd512>
{
    private readonly Vector512<float> _v = value;
    public static int Count => Vector512<float>.Count;
    public static bool IsAccelerated => Vector512.IsHardwareAccelerated;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Load(float* source) => new(Vector512.Load(source));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Splat(float value) => new(Vector512.Create(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 operator +(Simd512 a, Simd512 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 operator -(Simd512 a, Simd512 b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 operator *(Simd512 a, Simd512 b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 operator /(Simd512 a, Simd512 b) => new(a._v / b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 MultiplyAdd(Simd512 a, Simd512 b, Simd512 c) => new(Vector512.MultiplyAddEstimate(a._v, b._v, c._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Clamp(Simd512 x, Simd512 min, Simd512 max) => new(Vector512.ClampNative(x._v, min._v, max._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Exp(Simd512 x) => new(Vector512.Exp(x._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Sqrt(Simd512 x) => new(Vector512.Sqrt(x._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Store(float* destination) => _v.Store(destination);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public float Sum() => Vector512.Sum(_v);
}

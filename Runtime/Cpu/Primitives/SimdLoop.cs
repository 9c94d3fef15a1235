namespace LoraRuntime.Cpu.Primitives;

/// <summary>An element-wise operator: processes the <c>TV.Count</c> elements at index i of the streams it holds.</summary>
internal interface ISimdOp
{
    void Invoke<TV>(long i) where TV : struct, ISimd<TV>;
}

/// <summary>An operator that yields, for the <c>TV.Count</c> elements at index i, the values to be summed (it may also store).</summary>
internal interface ISimdSum
{
    TV Invoke<TV>(long i) where TV : struct, ISimd<TV>;
}

/// <summary>
/// The one driver of every fused operator: the widest accelerated vectors first, then each narrower width for the
/// tail, ending with scalars, so any length is handled without masks or overlapping stores.
/// </summary>
internal static class SimdLoop
{
    /// <summary>Applies <paramref name="op"/> to the elements [start, end).</summary>
    public static void Run<TOp>(TOp op, long start, long end) where TOp : struct, ISimdOp
    {
        long i = start;
        RunWidth<TOp, Simd512>(op, ref i, end);
        RunWidth<TOp, Simd256>(op, ref i, end);
        RunWidth<TOp, Simd128>(op, ref i, end);
        RunWidth<TOp, Simd1>(op, ref i, end);
    }

    /// <summary>The sum over [start, end) of what <paramref name="op"/> yields.</summary>
    public static float Sum<TOp>(TOp op, long start, long end) where TOp : struct, ISimdSum
    {
        long i = start;
        float sum = SumWidth<TOp, Simd512>(op, ref i, end);
        sum += SumWidth<TOp, Simd256>(op, ref i, end);
        sum += SumWidth<TOp, Simd128>(op, ref i, end);
        return sum + SumWidth<TOp, Simd1>(op, ref i, end);
    }

    private static void RunWidth<TOp, TV>(TOp op, ref long i, long end) where TOp : struct, ISimdOp where TV : struct, ISimd<TV>
    {
        if (!TV.IsAccelerated) return;
        for (; end - i >= TV.Count; i += TV.Count) op.Invoke<TV>(i);
    }

    private static float SumWidth<TOp, TV>(TOp op, ref long i, long end) where TOp : struct, ISimdSum where TV : struct, ISimd<TV>
    {
        if (!TV.IsAccelerated || end - i < TV.Count) return 0;
        var sum = op.Invoke<TV>(i);
        for (i += TV.Count; end - i >= TV.Count; i += TV.Count) sum += op.Invoke<TV>(i);
        return sum.Sum();
    }
}

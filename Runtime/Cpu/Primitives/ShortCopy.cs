using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace LoraRuntime.Cpu.Primitives;

/// <summary>
/// Copies of a few dozen floats, inlined as whole vectors. Span.CopyTo / Buffer.MemoryCopy call the general memmove,
/// whose call and size dispatch cost more than moving 48 or 128 bytes; packing a panel (12 floats per depth step)
/// or moving a head row (HS = 32 floats) does that thousands of times per product.
/// </summary>
internal static unsafe class ShortCopy
{
    /// <summary>dst[0..n) = src[0..n); the ranges do not overlap.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Floats(float* src, float* dst, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i + 16 <= n; i += 16) Vector512.Load(src + i).Store(dst + i);
        if (Vector256.IsHardwareAccelerated)
            for (; i + 8 <= n; i += 8) Vector256.Load(src + i).Store(dst + i);
        if (Vector128.IsHardwareAccelerated)
            for (; i + 4 <= n; i += 4) Vector128.Load(src + i).Store(dst + i);
        for (; i < n; i++) dst[i] = src[i];
    }
}

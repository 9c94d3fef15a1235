using System.Numerics;

namespace LoraRuntime.Memory;

/// <summary>
/// Size classes of the caching pools: four classes per power of two (so at most 25% is wasted by rounding),
/// with a 512-byte minimum. Pure arithmetic, shared by every backend's pool.
/// </summary>
public static class SizeClasses
{
    /// <summary>The smallest block handed out.</summary>
    public const long MinBlockBytes = 512;

    /// <summary>The largest request any pool accepts (1 TiB): a guard against sizes read from untrusted headers.</summary>
    public const long MaxBlockBytes = 1L << 40;

    /// <summary>Number of classes up to <see cref="MaxBlockBytes"/>.</summary>
    public static readonly int Count = ClassOf(MaxBlockBytes) + 1;

    /// <summary>The class of a request of <paramref name="bytes"/> bytes (0 &lt; bytes ≤ <see cref="MaxBlockBytes"/>).</summary>
    public static int ClassOf(long bytes)
    {
        if (bytes <= MinBlockBytes) return 0;
        // Class c covers (size(c-1), size(c)], with size = 2^e · (4 + q) / 4 for q in 0..3.
        int e = 63 - BitOperations.LeadingZeroCount((ulong)(bytes - 1)); // 2^e ≤ bytes-1 < 2^(e+1)
        long step = 1L << (e - 2);
        long q = (bytes - 1 - (1L << e)) / step; // 0..3
        const int MinExponent = 9; // log2(MinBlockBytes)
        return (e - MinExponent) * 4 + (int)q + 1;
    }

    /// <summary>The block size of class <paramref name="sizeClass"/>.</summary>
    public static long SizeOf(int sizeClass)
    {
        if (sizeClass == 0) return MinBlockBytes;
        int e = (sizeClass - 1) / 4 + 9;
        int q = (sizeClass - 1) % 4;
        return (1L << e) + (q + 1) * (1L << (e - 2));
    }
}

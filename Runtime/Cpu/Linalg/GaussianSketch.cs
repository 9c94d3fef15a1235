using System.Runtime.CompilerServices;

namespace LoraRuntime.Cpu.Linalg;

/// <summary>
/// Standard normal test matrices for the randomized range finder, reproducible from a seed: element i depends only
/// on (seed, i) — a SplitMix64 hash of the pair's counter feeds a Box–Muller transform — so the values do not depend
/// on threads, chunking or the call's history.
/// </summary>
internal static unsafe class GaussianSketch
{
    /// <summary>Fills <paramref name="count"/> floats with independent N(0, 1) samples for <paramref name="seed"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Fill(float* destination, long count, ulong seed)
    {
        for (long pair = 0; 2 * pair < count; pair++)
        {
            ulong h1 = Mix(seed ^ Mix((ulong)(2 * pair))), h2 = Mix(seed ^ Mix((ulong)(2 * pair + 1)));
            // 53 random bits each; u1 in (0, 1] so that the logarithm is finite.
            double u1 = ((h1 >> 11) + 1) * (1.0 / (1UL << 53));
            double u2 = (h2 >> 11) * (1.0 / (1UL << 53));
            double radius = Math.Sqrt(-2 * Math.Log(u1)), angle = 2 * Math.PI * u2;
            destination[2 * pair] = (float)(radius * Math.Cos(angle));
            if (2 * pair + 1 < count) destination[2 * pair + 1] = (float)(radius * Math.Sin(angle));
        }
    }

    /// <summary>SplitMix64's finaliser: a bijective 64-bit hash.</summary>
    private static ulong Mix(ulong x)
    {
        x += 0x9E3779B97F4A7C15UL;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return x ^ (x >> 31);
    }
}

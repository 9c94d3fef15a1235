namespace LoraRuntime.Layers;

/// <summary>
/// Reproducible random numbers for initialisation: value i of a stream is a pure function of (seed, i), built on
/// the backend's counter-based hash (<see cref="Backend.DropoutBits"/>), so results do not depend on call order or
/// thread count. Host-side and allocating: for initialisation, not hot paths.
/// </summary>
internal static class CounterRandom
{
    /// <summary>SplitMix64's finaliser: a bijection on 64 bits that spreads every input bit.</summary>
    public static ulong Mix64(ulong x)
    {
        x ^= x >> 30;
        x *= 0xbf58476d1ce4e5b9UL;
        x ^= x >> 27;
        x *= 0x94d049bb133111ebUL;
        return x ^ (x >> 31);
    }

    /// <summary>A stream seed for <paramref name="path"/> under <paramref name="seed"/> (FNV-1a of the path, mixed).</summary>
    public static ulong Seed(ulong seed, string path)
    {
        ulong hash = 0xcbf29ce484222325UL;
        foreach (char c in path) hash = (hash ^ c) * 0x100000001b3UL;
        return Mix64(seed ^ Mix64(hash));
    }

    /// <summary>Value i in [0, 1), with 53 random bits.</summary>
    public static double Uniform(ulong seed, long i)
    {
        ulong hi = Backend.DropoutBits(seed, 2 * (ulong)i), lo = Backend.DropoutBits(seed, 2 * (ulong)i + 1);
        return (((ulong)hi << 21) ^ (lo >> 11)) * (1.0 / (1UL << 53));
    }

    /// <summary><paramref name="count"/> values uniform in [−bound, bound).</summary>
    public static float[] Uniform(ulong seed, long count, double bound)
    {
        var values = new float[count];
        for (long i = 0; i < count; i++) values[i] = (float)((2 * Uniform(seed, i) - 1) * bound);
        return values;
    }

    /// <summary><paramref name="count"/> values from N(0, std²) by Box–Muller on pairs of uniforms.</summary>
    public static float[] Normal(ulong seed, long count, double std)
    {
        var values = new float[count];
        for (long i = 0; i < count; i++)
        {
            double radius = Math.Sqrt(-2 * Math.Log(1 - Uniform(seed, 2 * i)));
            values[i] = (float)(std * radius * Math.Cos(2 * Math.PI * Uniform(seed, 2 * i + 1)));
        }
        return values;
    }
}

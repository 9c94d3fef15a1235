namespace LoraRuntime.Layers.Training;

/// <summary>
/// xoshiro256** with its whole state exposed, so a checkpoint can save it and a resumed run draws exactly the
/// same batches as an uninterrupted one. A struct: drawing never allocates.
/// </summary>
internal struct TrainingRandom
{
    private ulong _s0, _s1, _s2, _s3;

    /// <summary>A generator seeded through SplitMix64 (any seed, 0 included, gives a valid state).</summary>
    public TrainingRandom(ulong seed)
    {
        _s0 = SplitMix(ref seed); _s1 = SplitMix(ref seed); _s2 = SplitMix(ref seed); _s3 = SplitMix(ref seed);
    }

    /// <summary>The four state words (for checkpoints).</summary>
    public readonly ulong[] GetState() => [_s0, _s1, _s2, _s3];

    /// <summary>A generator at a saved state; the state must not be all zero.</summary>
    public static TrainingRandom FromState(ReadOnlySpan<ulong> state)
    {
        if (state.Length != 4)
            throw new ArgumentException($"a generator state is 4 words; got {state.Length}", nameof(state));
        if ((state[0] | state[1] | state[2] | state[3]) == 0)
            throw new ArgumentException("an all-zero state is not a valid xoshiro256** state", nameof(state));
        return new TrainingRandom { _s0 = state[0], _s1 = state[1], _s2 = state[2], _s3 = state[3] };
    }

    /// <summary>The next 64 random bits.</summary>
    public ulong NextUInt64()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0; _s3 ^= _s1; _s1 ^= _s2; _s0 ^= _s3;
        _s2 ^= t;
        _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform in [0, <paramref name="bound"/>) without modulo bias (Lemire's method).</summary>
    public long NextInt64(long bound)
    {
        if (bound <= 0) throw new ArgumentOutOfRangeException(nameof(bound), bound, "bound must be > 0");
        ulong b = (ulong)bound;
        ulong hi = Math.BigMul(NextUInt64(), b, out ulong lo);
        if (lo < b)
        {
            ulong threshold = (0 - b) % b;
            while (lo < threshold) hi = Math.BigMul(NextUInt64(), b, out lo);
        }
        return (long)hi;
    }

    /// <summary>Uniform in [0, 1) with 24 random bits.</summary>
    public float NextSingle() => (NextUInt64() >> 40) * (1f / (1 << 24));

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}

using System.Globalization;

namespace LoraRuntime.Cli.Bench;

/// <summary>Inputs and option values the bench commands share.</summary>
internal static class BenchData
{
    /// <summary><paramref name="count"/> values uniform in [−bound, bound) from <paramref name="random"/>.</summary>
    public static float[] Uniform(Random random, int count, float bound = 1)
    {
        var values = new float[count];
        for (int i = 0; i < values.Length; i++) values[i] = (random.NextSingle() * 2 - 1) * bound;
        return values;
    }

    /// <summary>
    /// A comma-separated list of positive integers ("1,64,512"); a <see cref="UsageException"/> naming
    /// <paramref name="option"/> and the bad token otherwise.
    /// </summary>
    public static IReadOnlyList<int> ParseSizes(string? text, string option)
    {
        if (string.IsNullOrWhiteSpace(text)) throw new UsageException($"{option}: expected a list of positive integers like 1,64,512; got nothing");
        var sizes = new List<int>();
        foreach (string token in text.Split(','))
        {
            if (!int.TryParse(token.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int size) || size < 1)
                throw new UsageException($"{option}: '{token.Trim()}' is not a positive integer");
            sizes.Add(size);
        }
        return sizes;
    }

    /// <summary>A positive option value, or a <see cref="UsageException"/> naming the option.</summary>
    public static int Positive(int value, string option) =>
        value >= 1 ? value : throw new UsageException($"{option}: expected a positive integer; got {value}");
}

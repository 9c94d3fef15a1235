using System.Diagnostics;

namespace LoraRuntime.Cli.Bench;

/// <summary>The timing of one benchmark case.</summary>
/// <param name="MedianMs">The median of the timed runs, in milliseconds.</param>
/// <param name="MinMs">The fastest timed run, in milliseconds.</param>
/// <param name="Reps">How many runs were timed.</param>
internal sealed record Timing(double MedianMs, double MinMs, int Reps);

/// <summary>
/// The timing loop every <c>lora bench</c> command shares: warm-up runs, then timed runs, each followed by a
/// device synchronisation and timed on its own, reported as the median.
/// </summary>
internal static class BenchTimer
{
    /// <summary>Timed seconds per case that automatic repetition aims at.</summary>
    public const double DefaultTargetSeconds = 0.75;

    /// <summary>The fewest timed runs automatic repetition does.</summary>
    public const int MinAutoReps = 5;

    /// <summary>The most timed runs automatic repetition does.</summary>
    public const int MaxAutoReps = 100_000;

    /// <summary>
    /// Runs <paramref name="run"/> <paramref name="warmup"/> times untimed, then <paramref name="reps"/> times timed,
    /// or, when <paramref name="reps"/> is null, as often as fits <paramref name="targetSeconds"/> judging by the
    /// warm-up (at least <see cref="MinAutoReps"/>). <paramref name="synchronize"/> runs after each call so that
    /// asynchronous devices are timed to completion.
    /// </summary>
    public static Timing Measure(Action run, Action synchronize, int warmup, int? reps, double targetSeconds = DefaultTargetSeconds)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(warmup);
        if (reps is < 1) throw new ArgumentOutOfRangeException(nameof(reps), reps, "at least 1 timed run");
        var warm = new double[Math.Max(warmup, 1)];
        for (int i = 0; i < warmup; i++) warm[i] = TimeOnce(run, synchronize);
        if (warmup == 0 && reps is null) warm[0] = TimeOnce(run, synchronize); // calibration run
        int count = reps ?? AutoReps(Median(warm), targetSeconds);
        var times = new double[count];
        for (int i = 0; i < count; i++) times[i] = TimeOnce(run, synchronize);
        return new Timing(Median(times), times.Min(), count);
    }

    /// <summary>
    /// Times several cases side by side: each round runs every case once, in order, after its untimed
    /// <c>Setup</c> (which puts shared state, such as a merged weight, the way the case needs it), so that a change in
    /// the machine's load between cases affects all of them alike. <paramref name="warmup"/> rounds are untimed;
    /// <paramref name="reps"/> rounds are timed, or, when null, as many as fit <paramref name="targetSeconds"/> per case.
    /// </summary>
    public static Timing[] MeasureInterleaved(IReadOnlyList<(Action Setup, Action Run)> cases, Action synchronize, int warmup, int? reps,
        double targetSeconds = DefaultTargetSeconds)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(warmup);
        if (reps is < 1) throw new ArgumentOutOfRangeException(nameof(reps), reps, "at least 1 timed round");
        var warm = new double[Math.Max(warmup, 1)];
        for (int round = 0; round < warm.Length; round++)
            foreach (var (setup, run) in cases)
            {
                setup();
                warm[round] += TimeOnce(run, synchronize);
            }
        int count = reps ?? AutoReps(Median(warm) / Math.Max(cases.Count, 1), targetSeconds);
        var times = new double[cases.Count][];
        for (int c = 0; c < cases.Count; c++) times[c] = new double[count];
        for (int round = 0; round < count; round++)
            for (int c = 0; c < cases.Count; c++)
            {
                cases[c].Setup();
                times[c][round] = TimeOnce(cases[c].Run, synchronize);
            }
        return times.Select(t => new Timing(Median(t), t.Min(), count)).ToArray();
    }

    /// <summary>How many runs of <paramref name="estimateMs"/> fill <paramref name="targetSeconds"/>, clamped.</summary>
    public static int AutoReps(double estimateMs, double targetSeconds)
    {
        double runs = Math.Ceiling(targetSeconds * 1000 / Math.Max(estimateMs, 1e-6));
        return (int)Math.Clamp(runs, MinAutoReps, MaxAutoReps);
    }

    /// <summary>The median (the mean of the two middle values for an even count); NaN when empty.</summary>
    public static double Median(ReadOnlySpan<double> values)
    {
        if (values.IsEmpty) return double.NaN;
        var sorted = values.ToArray();
        Array.Sort(sorted);
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    private static double TimeOnce(Action run, Action synchronize)
    {
        long start = Stopwatch.GetTimestamp();
        run();
        synchronize();
        return (Stopwatch.GetTimestamp() - start) * 1000.0 / Stopwatch.Frequency; // full timer resolution, not TimeSpan ticks
    }
}

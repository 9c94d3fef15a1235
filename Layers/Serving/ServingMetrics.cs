using System.Diagnostics;

namespace LoraRuntime.Layers.Serving;

/// <summary>A snapshot of the counters of a <see cref="LoraRuntime.Hosting.LoraEngine"/>'s generations (<see cref="LoraRuntime.Hosting.EngineStats.Generation"/>).</summary>
/// <param name="Requests">Requests completed.</param>
/// <param name="Failed">Requests that ended in an error.</param>
/// <param name="GeneratedTokens">Tokens generated.</param>
/// <param name="Steps">Decoder steps run.</param>
/// <param name="BusySeconds">Time spent in steps.</param>
/// <param name="TokensPerSecond">Generated tokens per second of step time.</param>
/// <param name="MeanBatchRows">Rows per step, on average.</param>
/// <param name="LatencyP50Ms">Median latency of the recent requests (the last 4096 requests).</param>
/// <param name="LatencyP90Ms">90th percentile.</param>
/// <param name="LatencyP99Ms">99th percentile.</param>
/// <param name="LatencyP999Ms">99.9th percentile (the largest of fewer than 1000 latencies).</param>
/// <param name="Cancelled">Requests their callers cancelled (a client that went away, a deadline): not failures.</param>
public readonly record struct MetricsSnapshot(long Requests, long Failed, long GeneratedTokens, long Steps, double BusySeconds, double TokensPerSecond,
    double MeanBatchRows, double LatencyP50Ms, double LatencyP90Ms, double LatencyP99Ms, double LatencyP999Ms = 0, long Cancelled = 0);

/// <summary>Counters of a scheduler: requests, tokens, step time, and a window of recent latencies. Thread-safe; recording allocates nothing.</summary>
internal sealed class ServingMetrics
{
    /// <summary>Latencies kept for the percentiles.</summary>
    public const int Window = 4096;

    private readonly Lock _lock = new();
    private readonly double[] _latencies = new double[Window];
    private long _requests, _failed, _cancelled, _tokens, _steps, _rows, _busyTicks;

    /// <summary>Counts one step of <paramref name="rows"/> rows that took <paramref name="ticks"/> Stopwatch ticks and generated <paramref name="tokens"/>.</summary>
    public void RecordStep(int rows, int tokens, long ticks)
    {
        lock (_lock)
        {
            _steps++;
            _rows += rows;
            _tokens += tokens;
            _busyTicks += ticks;
        }
    }

    /// <summary>Counts a completed request.</summary>
    public void RecordCompletion(TimeSpan latency)
    {
        lock (_lock) _latencies[_requests++ % Window] = latency.TotalMilliseconds;
    }

    /// <summary>Counts a failed request.</summary>
    public void RecordFailure()
    {
        lock (_lock) _failed++;
    }

    /// <summary>Counts a request its caller cancelled.</summary>
    public void RecordCancellation()
    {
        lock (_lock) _cancelled++;
    }

    /// <summary>A consistent snapshot (allocates a sorted copy of the window).</summary>
    public MetricsSnapshot Snapshot()
    {
        double[] window;
        MetricsSnapshot s;
        lock (_lock)
        {
            window = _latencies.AsSpan(0, (int)Math.Min(_requests, Window)).ToArray();
            double busy = (double)_busyTicks / Stopwatch.Frequency;
            s = new MetricsSnapshot(_requests, _failed, _tokens, _steps, busy, busy > 0 ? _tokens / busy : 0, _steps > 0 ? (double)_rows / _steps : 0, 0, 0, 0) { Cancelled = _cancelled };
        }
        Array.Sort(window);
        return s with { LatencyP50Ms = Percentile(window, 0.50), LatencyP90Ms = Percentile(window, 0.90), LatencyP99Ms = Percentile(window, 0.99),
            LatencyP999Ms = Percentile(window, 0.999) };
    }

    /// <summary>The nearest-rank percentile of sorted values (0 when empty).</summary>
    public static double Percentile(ReadOnlySpan<double> sorted, double q)
    {
        if (sorted.IsEmpty) return 0;
        int rank = (int)Math.Ceiling(q * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }
}

using System.Diagnostics.Metrics;

namespace LoraRuntime.Layers.Serving;

/// <summary>
/// A scheduler's instruments on System.Diagnostics.Metrics, under the meter <see cref="Name"/>, for any exporter
/// (<c>lora serve</c> scrapes them as Prometheus text through OpenTelemetry): requests by adapter and outcome, prompt
/// and generated tokens by adapter, request duration, time to first token and inter-token latency histograms, and
/// gauges of the queue, the running sequences, the KV cache and the adapter bank. Recording allocates nothing; with no
/// listener it costs a branch.
/// </summary>
internal sealed class ServingMeter : IDisposable
{
    /// <summary>The meter's name, which an exporter subscribes to.</summary>
    public const string Name = "LoraRuntime.Serving";

    // Latency bounds in seconds, from a millisecond (a decode step of a small model) to a minute (a long queue).
    private static readonly double[] LatencyBounds = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

    private readonly Meter _meter = new(Name);

    /// <summary>Instruments for the scheduler; the gauges read <paramref name="gauges"/> when an exporter collects.</summary>
    public ServingMeter(Gauges gauges)
    {
        Requests = _meter.CreateCounter<long>("lora.requests", "{request}", "Requests ended, by adapter and outcome (completed, cancelled, failed)");
        PromptTokens = _meter.CreateCounter<long>("lora.prompt_tokens", "{token}", "Prompt tokens of the requests ended, by adapter");
        GeneratedTokens = _meter.CreateCounter<long>("lora.generated_tokens", "{token}", "Tokens generated, by adapter");
        var advice = new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBounds };
        RequestDuration = _meter.CreateHistogram("lora.request.duration", "s", "From submission to the end of the request", advice: advice);
        TimeToFirstToken = _meter.CreateHistogram("lora.time_to_first_token", "s", "From submission to the first generated token (queue and prefill)", advice: advice);
        InterTokenLatency = _meter.CreateHistogram("lora.inter_token_latency", "s", "Between two generated tokens of a request", advice: advice);
        _meter.CreateObservableGauge("lora.queue.depth", gauges.Pending, "{request}", "Requests waiting for a slot");
        _meter.CreateObservableGauge("lora.sequences.running", gauges.Running, "{sequence}", "Requests in a slot");
        _meter.CreateObservableGauge("lora.kv_cache.usage", gauges.KvCacheUsage, "1", "Cached tokens over the cache's capacity (slots × context)");
        _meter.CreateObservableGauge("lora.adapters.loaded", gauges.AdaptersLoaded, "{adapter}", "Adapters in the bank");
        _meter.CreateObservableGauge("lora.adapter_bank.usage", gauges.AdapterBankUsage, "1", "Resident adapter bytes over the bank's budget");
    }

    /// <summary>What the gauges read.</summary>
    internal sealed record Gauges(Func<int> Pending, Func<int> Running, Func<double> KvCacheUsage, Func<int> AdaptersLoaded, Func<double> AdapterBankUsage);

    public Counter<long> Requests { get; }
    public Counter<long> PromptTokens { get; }
    public Counter<long> GeneratedTokens { get; }
    public Histogram<double> RequestDuration { get; }
    public Histogram<double> TimeToFirstToken { get; }
    public Histogram<double> InterTokenLatency { get; }

    /// <summary>The tag of a request's adapter (the base model's name without one).</summary>
    public static KeyValuePair<string, object?> Adapter(string name) => new("adapter", name);

    /// <summary>The tag of a request's outcome.</summary>
    public static KeyValuePair<string, object?> Outcome(string outcome) => new("outcome", outcome);

    public void Dispose() => _meter.Dispose();
}

using System.Diagnostics;
using System.Globalization;
using LoraRuntime.Cli.Commands;
using LoraRuntime.Hosting;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Layers.Serving;
using LoraRuntime.Layers.Text;

namespace LoraRuntime.Cli.Bench;

/// <summary>A model <c>lora bench latency</c> times, with random weights.</summary>
/// <param name="Name">"demo", "gpt2-small", a Llama-family preset, or the LxNHxCxVxT it was given as.</param>
/// <param name="Config">Its shape.</param>
internal sealed record LatencyModel(string Name, GptConfig Config)
{
    /// <summary>The preset names, for usage messages.</summary>
    public const string Presets = "demo, gpt2-small, smollm2-135m, qwen2.5-0.5b, llama3.2-1b";

    /// <summary>
    /// "demo" (the shape <c>lora demo</c> trains: V = Tiny Shakespeare's characters, 4 layers, 4 heads, 128 wide, context 64),
    /// "gpt2-small" (12 layers, 12 heads, 768 wide, V = 50257), the real shapes of SmolLM2-135M, Qwen2.5-0.5B and
    /// Llama-3.2-1B (their config.json's), each with a context of <paramref name="presetContext"/>; or LxNHxCxVxT.
    /// </summary>
    public static LatencyModel Parse(string spec, int presetContext)
    {
        string s = spec.Trim();
        if (s == "demo") return new(s, new GptConfig(CharTokenizer.FromCorpus(DemoCommand.ReadCorpus()).Size));
        if (s == "gpt2-small") return new(s, new GptConfig(50257, Layers: 12, Heads: 12, Channels: 768, BlockSize: presetContext));
        if (LlamaPreset(s, presetContext) is { } llama) return new(s, llama);
        var parts = s.Split('x');
        var dims = new int[parts.Length];
        bool ok = parts.Length == 5;
        for (int i = 0; ok && i < parts.Length; i++) ok = int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out dims[i]) && dims[i] > 0;
        if (!ok || dims[2] % dims[1] != 0)
            throw new UsageException($"--models: expected {Presets} or LxNHxCxVxT (NH dividing C, e.g. 2x2x16x13x24); got '{spec}'");
        return new(s, new GptConfig(dims[3], dims[0], dims[1], dims[2], dims[4]));
    }

    /// <summary>The architectures of three small Llama-family models as their Hugging Face configurations give them.</summary>
    public static GptConfig? LlamaPreset(string name, int context)
    {
        GptConfig Llama(int vocabulary, int layers, int heads, int kvHeads, int channels, int intermediate, float epsilon, RotaryOptions rotary) =>
            new(vocabulary, layers, heads, channels, context, epsilon)
            {
                Norm = NormKind.RmsNorm, Mlp = MlpKind.GatedSilu, IntermediateSize = intermediate, KeyValueHeads = kvHeads,
                QkvBias = false, OutputBias = false, MlpBias = false, TiedHead = true, Rotary = rotary,
            };
        return name switch
        {
            "smollm2-135m" => Llama(49152, 30, 9, 3, 576, 1536, 1e-5f, new RotaryOptions { Theta = 100000 }),
            "qwen2.5-0.5b" => Llama(151936, 24, 14, 2, 896, 4864, 1e-6f, new RotaryOptions { Theta = 1000000 }) with { QkvBias = true },
            "llama3.2-1b" => Llama(128256, 16, 32, 8, 2048, 8192, 1e-5f, new RotaryOptions
            {
                Theta = 500000, Scaling = RopeScaling.Llama3, Factor = 32, LowFrequencyFactor = 1, HighFrequencyFactor = 4, OriginalMaxPositions = 8192,
            }),
            _ => null,
        };
    }
}

/// <summary>What <c>lora bench latency</c> times on each model.</summary>
/// <param name="PromptTokens">The prompt of a forward (cut to the model's context).</param>
/// <param name="Context">Tokens already cached when a decode step is timed (cut to the context − 1).</param>
/// <param name="Rank">R of the adapter.</param>
/// <param name="Targets">The projections it adapts (PEFT target_modules).</param>
/// <param name="Sequences">Sequences in the batched decode step (1: none timed).</param>
internal sealed record LatencyBenchShape(int PromptTokens, int Context, int Rank, IReadOnlyList<string> Targets, int Sequences = 1);

/// <summary>
/// Latency of the embedding API (<see cref="LoraEngine"/>) on one request: a forward over a prompt (a full prefill: two
/// prompts that differ in their first token alternate, so no call finds its prefix cached) and one decode step (a
/// forward one token longer than the cached context), each for the base and with an adapter. The engine is reserved
/// up front (one sequence of the model's context), warmed up, and the garbage collector is settled before each timed
/// section; the collections and the calling thread's allocations during it are counted.
/// </summary>
internal static class LatencyBench
{
    /// <summary>Timed seconds per case that automatic repetition aims at.</summary>
    public const double AutoSeconds = 4;

    /// <summary>The fewest timed calls automatic repetition does.</summary>
    public const int MinAutoReps = 100;

    /// <summary>The most timed calls automatic repetition does.</summary>
    public const int MaxAutoReps = 5000;

    /// <summary>
    /// The records of <paramref name="model"/>: forward base, forward lora, decode base, decode lora. Each case is warmed
    /// up with <paramref name="warmup"/> calls and for at least <paramref name="warmupSeconds"/> (the JIT compiles hot
    /// methods again, optimised, a while after their first calls, on a thread of its own).
    /// </summary>
    public static IReadOnlyList<LatencyRecord> Run(Backend backend, LatencyModel model, LatencyBenchShape shape, int warmup, double warmupSeconds, int? reps,
        WeightStorage? storage = null)
    {
        var config = model.Config;
        int prompt = Math.Min(shape.PromptTokens, config.BlockSize), context = Math.Min(shape.Context, config.BlockSize - 1);
        if (context < 1) throw new UsageException($"--models: {model.Name} has a context of {config.BlockSize}; a decode step needs at least 2");
        // Random float32 weights encoded in the format asked for, as a checkpoint loaded with --quantize holds them.
        var formats = (storage ?? WeightStorage.Float32).FormatsFor(_ => WeightFormat.F32);
        using var gpt = new GptModel(backend, config, 1, training: false, trainParameters: false, formats);
        gpt.Initialize(7, scaleResidual: true);
        if (storage?.DoubleQuantized == true) gpt.DoubleQuantizeNf4();
        string adapterDir = Path.Combine(Path.GetTempPath(), "lora-latency-" + Guid.NewGuid().ToString("N"));
        try
        {
            SaveAdapter(gpt, shape, adapterDir);
            using var engine = LoraEngine.Create(gpt, tokenizer: null, new EngineOptions
            {
                MaxBatch = 1, MaxStepTokens = prompt, MaxRank = shape.Rank, AdapterBudgetBytes = 1L << 40,
            });
            engine.LoadAdapter("lora", adapterDir);
            var random = new Random(11);
            int v = config.Vocabulary;
            int[] first = Enumerable.Range(0, prompt).Select(_ => random.Next(v)).ToArray();
            int[] second = [(first[0] + 1) % v, .. first[1..]];
            int[] sequence = Enumerable.Range(0, context + 1).Select(_ => random.Next(v)).ToArray();
            var logits = new float[v];
            int[] dims = [config.Layers, config.Heads, config.Channels, v, engine.MaxSequence];
            var records = new List<LatencyRecord>(4);
            foreach (string? adapter in new[] { null, "lora" })
            {
                int call = 0;
                records.Add(Time(model.Name, backend.Name, "forward", adapter, dims, prompt, warmup, warmupSeconds, reps, backend.Pool.Stats.PeakBytesInUse,
                    () => engine.Forward((call++ & 1) == 0 ? first : second, logits, adapter)));
            }
            foreach (string? adapter in new[] { null, "lora" })
            {
                engine.Forward(sequence.AsSpan(0, context), logits, adapter); // the cache holds the context; each timed call adds one token
                records.Add(Time(model.Name, backend.Name, "decode", adapter, dims, context, warmup, warmupSeconds, reps, backend.Pool.Stats.PeakBytesInUse,
                    () => engine.Forward(sequence, logits, adapter)));
            }
            if (shape.Sequences > 1) records.Add(BatchDecode(gpt, model.Name, backend, shape.Sequences, context, dims, warmup, warmupSeconds, reps, random));
            return records;
        }
        finally
        {
            if (Directory.Exists(adapterDir)) Directory.Delete(adapterDir, recursive: true);
        }
    }

    /// <summary>Percentile figures of <paramref name="call"/>, timed after <paramref name="warmup"/> untimed calls with the collector settled.</summary>
    private static LatencyRecord Time(string model, string device, string op, string? adapter, int[] dims, int tokens, int warmup, double warmupSeconds,
        int? reps, long peakBytes, Action call)
    {
        var warm = new double[Math.Max(warmup, 1)];
        long started = Stopwatch.GetTimestamp();
        for (int i = 0; i < warmup; i++) warm[i] = TimeOnce(call);
        if (warmup == 0) warm[0] = TimeOnce(call); // calibration
        while (Stopwatch.GetElapsedTime(started).TotalSeconds < warmupSeconds) call();
        int count = reps ?? (int)Math.Clamp(Math.Ceiling(AutoSeconds * 1000 / Math.Max(BenchTimer.Median(warm), 1e-6)), MinAutoReps, MaxAutoReps);
        var times = new double[count];
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        int gen0 = GC.CollectionCount(0), gen1 = GC.CollectionCount(1), gen2 = GC.CollectionCount(2);
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < times.Length; i++) times[i] = TimeOnce(call);
        allocated = GC.GetAllocatedBytesForCurrentThread() - allocated;
        gen0 = GC.CollectionCount(0) - gen0;
        gen1 = GC.CollectionCount(1) - gen1;
        gen2 = GC.CollectionCount(2) - gen2;
        Array.Sort(times);
        double p50 = ServingMetrics.Percentile(times, 0.50), p99 = ServingMetrics.Percentile(times, 0.99), p999 = ServingMetrics.Percentile(times, 0.999);
        // A forward computes its prompt's tokens; a decode step one token.
        double tokensPerSecond = (op is "forward" or "decode_batch" ? tokens : 1) * 1000 / p50;
        using var process = Process.GetCurrentProcess();
        return new LatencyRecord(model, device, op, adapter ?? "base", dims, tokens, count, p50, p99, p999, times[^1], p99 / p50, gen0, gen1, gen2, allocated,
            tokensPerSecond, peakBytes, process.PeakWorkingSet64);
    }

    /// <summary>
    /// One decode step of <paramref name="sequences"/> sequences at once, each with <paramref name="context"/> tokens
    /// cached (a continuous-batching server's step): op "decode_batch", tokens/s counting every sequence's token.
    /// </summary>
    private static LatencyRecord BatchDecode(GptModel gpt, string name, Backend backend, int sequences, int context, int[] dims, int warmup,
        double warmupSeconds, int? reps, Random random)
    {
        using var decoder = new KvCacheDecoder(new ServingLayout(gpt), sequences, maxStepTokens: Math.Max(sequences, context), maxRank: 1);
        int v = gpt.Config.Vocabulary;
        var logits = new float[(long)sequences * v];
        for (int s = 0; s < sequences; s++)
        {
            int[] cached = Enumerable.Range(0, context).Select(_ => random.Next(v)).ToArray();
            decoder.Forward([new DecodeRow(s, 0, context, null)], cached, logits.AsSpan(0, v));
        }
        var rows = Enumerable.Range(0, sequences).Select(s => new DecodeRow(s, context, 1, null)).ToArray();
        int[] next = Enumerable.Range(0, sequences).Select(_ => random.Next(v)).ToArray();
        return Time(name, backend.Name, "decode_batch", null, dims, sequences, warmup, warmupSeconds, reps, backend.Pool.Stats.PeakBytesInUse,
            () => decoder.Forward(rows, next, logits)); // each step rewrites position `context`: the cache stays at context + 1
    }

    private static double TimeOnce(Action call)
    {
        long start = Stopwatch.GetTimestamp();
        call();
        return (Stopwatch.GetTimestamp() - start) * 1000.0 / Stopwatch.Frequency;
    }

    /// <summary>A trained-looking adapter (random A, small random B) of <paramref name="shape"/>'s rank and targets, saved in PEFT's layout.</summary>
    private static void SaveAdapter(GptModel model, LatencyBenchShape shape, string directory)
    {
        var config = new LoraConfig
        {
            TargetModules = shape.Targets, Defaults = new LoraOptions { Rank = shape.Rank, Alpha = shape.Rank, Init = LoraInit.Random, Seed = 3 },
        };
        using var lora = new LoraModel(model);
        LoraAdapter adapter;
        try
        {
            adapter = lora.AddAdapter("lora", config);
        }
        catch (ArgumentException e)
        {
            throw new UsageException($"--targets: {e.Message}");
        }
        var backend = model.Parameters.Backend;
        foreach (var w in adapter.Modules) backend.Scale(w.B.Value, w.B.Value, 0.05f);
        PeftAdapterFiles.Save(adapter, config, directory, "random");
    }
}

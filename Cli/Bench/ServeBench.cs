using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Layers.Serving;

namespace LoraRuntime.Cli.Bench;

/// <summary>The model and batch of <c>lora bench serve</c>.</summary>
/// <param name="Config">The GPT (random weights).</param>
/// <param name="Batch">Requests decoded together.</param>
/// <param name="Rank">R of every adapter.</param>
/// <param name="Context">Tokens already in each request's cache when the decode step is timed.</param>
/// <param name="Distinct">The numbers of distinct adapters in the batch to time.</param>
/// <param name="Targets">The projections every adapter adapts (PEFT target_modules).</param>
internal sealed record ServeBenchShape(GptConfig Config, int Batch, int Rank, int Context, IReadOnlyList<int> Distinct, IReadOnlyList<string> Targets);

/// <summary>
/// Times one decode step of a batch of requests through <see cref="KvCacheDecoder"/> (KV cache filled to the context,
/// greedy sampling included): with d distinct adapters spread over the rows for each d ("decode_mixed"), the same batch
/// with one adapter merged into the base weights ("decode_merged"), and a loop over the adapters, one pass per adapter
/// over its rows ("decode_loop"). The cases run interleaved round by round. rel_err compares each case's logits with
/// every row run alone with its adapter; ratio is the median over the one-adapter case's.
/// </summary>
internal static class ServeBench
{
    /// <summary>The records, in the order: mixed for each d, merged, loop over the largest d.</summary>
    public static IReadOnlyList<BenchRecord> Run(Backend backend, ServeBenchShape shape, int warmup, int? reps, double targetSeconds = BenchTimer.DefaultTargetSeconds)
    {
        var config = shape.Config;
        int batch = shape.Batch, v = config.Vocabulary, maxDistinct = shape.Distinct.Max();
        if (shape.Context + 1 > config.BlockSize) throw new UsageException($"--context: expected at most {config.BlockSize - 1} (the block size − 1); got {shape.Context}");
        using var model = new GptModel(backend, config, 1, training: false, trainParameters: false);
        model.Initialize(7, scaleResidual: true);
        var layout = new ServingLayout(model);
        using var lora = new LoraModel(model);
        using var bank = new AdapterBank(layout, long.MaxValue, shape.Rank);
        var adapters = new ServedAdapter[maxDistinct];
        double loraFlops = 0;
        for (int a = 0; a < maxDistinct; a++)
        {
            var adapter = lora.AddAdapter("a" + a, new LoraConfig
            {
                TargetModules = shape.Targets, Defaults = new LoraOptions { Rank = shape.Rank, Alpha = shape.Rank, Init = LoraInit.Random, Seed = (ulong)a },
            });
            // A trained-looking adapter: B small but not zero.
            foreach (var w in adapter.Modules) backend.Scale(w.B.Value, w.B.Value, 0.05f);
            lora.DisableAdapters(); // the training layers are not used; only the merged case folds one in
            var modules = AdapterWeights.FromAdapter(adapter);
            adapters[a] = bank.Add("a" + a, modules);
            loraFlops = modules.Sum(m => 2.0 * (m.A.Length + m.B.Length)); // per row: shrink and expand
            bank.TryAcquire("a" + a);
        }
        using var decoder = new KvCacheDecoder(layout, batch, Math.Max(batch, shape.Context), shape.Rank);
        // The decoder snapshots the (transposed) weights: the merged case gets its own, taken with a0 merged in.
        lora.Merge("a0");
        using var mergedDecoder = new KvCacheDecoder(layout, batch, Math.Max(batch, shape.Context), shape.Rank);
        lora.Unmerge();
        var random = new Random(11);
        var prompt = Enumerable.Range(0, shape.Context + 1).Select(_ => random.Next(v)).ToArray();
        var logits = new float[batch * v];
        var rows = new DecodeRow[batch];
        var tokens = new int[batch];
        var sampler = new TokenSampler(v);
        var greedy = new SamplingOptions(Temperature: 0);
        var rng = new Layers.Training.TrainingRandom(1);

        // Each case: which adapter each row uses, how the step is run, and the logits it gave.
        ServedAdapter? RowAdapter(int distinct, int row) => distinct == 0 ? null : adapters[row % distinct];
        void Fill(KvCacheDecoder decoder, int distinct)
        {
            // The cache of every slot holds the context, computed with the slot's adapter.
            for (int s = 0; s < batch; s++)
                decoder.Forward([new DecodeRow(s, 0, shape.Context, RowAdapter(distinct, s))], prompt.AsSpan(0, shape.Context), logits);
        }

        void Step(KvCacheDecoder decoder, int distinct)
        {
            for (int s = 0; s < batch; s++)
            {
                rows[s] = new DecodeRow(s, shape.Context, 1, RowAdapter(distinct, s));
                tokens[s] = prompt[shape.Context];
            }
            decoder.Forward(rows, tokens, logits);
            for (int s = 0; s < batch; s++) sampler.Sample(logits.AsSpan(s * v, v), greedy, 1f, ref rng);
        }
        void Loop(int distinct)
        {
            for (int a = 0; a < distinct; a++)
            {
                int count = 0;
                for (int s = a; s < batch; s += distinct)
                {
                    rows[count] = new DecodeRow(s, shape.Context, 1, adapters[a]);
                    tokens[count++] = prompt[shape.Context];
                }
                decoder.Forward(rows.AsSpan(0, count), tokens.AsSpan(0, count), logits.AsSpan(0, count * v));
                for (int k = 0; k < count; k++) sampler.Sample(logits.AsSpan(k * v, v), greedy, 1f, ref rng);
            }
        }
        // The work of a step does not depend on what the cache holds, and each check compares rows over the same cache:
        // one fill serves every case.
        Fill(decoder, maxDistinct);
        Fill(mergedDecoder, 0);
        var cases = new List<(string Op, int Distinct, Action Setup, Action Run)>();
        Action none = () => { };
        foreach (int d in shape.Distinct) cases.Add(("decode_mixed", d, none, () => Step(decoder, d)));
        cases.Add(("decode_merged", 1, none, () => Step(mergedDecoder, 0)));
        cases.Add(("decode_loop", maxDistinct, none, () => Loop(maxDistinct)));
        var timings = BenchTimer.MeasureInterleaved(cases.Select(c => (c.Setup, c.Run)).ToArray(), backend.Synchronize, warmup, reps, targetSeconds);

        double flops = StepFlops(config, batch, shape.Context + 1, layout, loraFlops);
        var records = new List<BenchRecord>(cases.Count);
        double reference = timings[shape.Distinct.ToList().IndexOf(shape.Distinct.Min())].MedianMs;
        for (int i = 0; i < cases.Count; i++)
        {
            var (op, distinct, setup, run) = cases[i];
            setup();
            run();
            double error = op == "decode_loop" ? LoopError(distinct) : op == "decode_merged" ? AloneError(mergedDecoder, 0) : AloneError(decoder, distinct);
            records.Add(new BenchRecord(op, backend.Name, [batch, distinct, shape.Rank, shape.Context], "-", timings[i].MedianMs,
                flops / (timings[i].MedianMs * 1e-3) / 1e9, timings[i].Reps, error, timings[i].MedianMs / reference, decoder.Bytes));
        }
        return records;

        // The last step's logits against each row run alone (batch 1) with the same adapter and cache.
        double AloneError(KvCacheDecoder decoder, int distinct)
        {
            var batched = (float[])logits.Clone();
            var alone = new float[v];
            double maxError = 0, maxValue = 0;
            for (int s = 0; s < batch; s++)
            {
                decoder.Forward([new DecodeRow(s, shape.Context, 1, RowAdapter(distinct, s))], [prompt[shape.Context]], alone);
                for (int j = 0; j < v; j++)
                {
                    maxError = Math.Max(maxError, Math.Abs(batched[s * v + j] - alone[j]));
                    maxValue = Math.Max(maxValue, Math.Abs(alone[j]));
                }
            }
            return maxError / maxValue;
        }

        double LoopError(int distinct)
        {
            // The loop's last pass holds the rows of the last adapter.
            int count = 0;
            for (int s = distinct - 1; s < batch; s += distinct) count++;
            var looped = logits.AsSpan(0, count * v).ToArray();
            var alone = new float[v];
            double maxError = 0, maxValue = 0;
            for (int k = 0, s = distinct - 1; k < count; k++, s += distinct)
            {
                decoder.Forward([new DecodeRow(s, shape.Context, 1, adapters[distinct - 1])], [prompt[shape.Context]], alone);
                for (int j = 0; j < v; j++)
                {
                    maxError = Math.Max(maxError, Math.Abs(looped[k * v + j] - alone[j]));
                    maxValue = Math.Max(maxValue, Math.Abs(alone[j]));
                }
            }
            return maxError / maxValue;
        }
    }

    /// <summary>Floating-point work of one decode step: projections, head, attention over the context, and one adapter per row.</summary>
    private static double StepFlops(GptConfig config, int batch, int length, ServingLayout layout, double loraFlops)
    {
        double weights = layout.Linears.Sum(l => (double)l.InFeatures * l.OutFeatures) + (double)config.Vocabulary * config.Channels;
        double attention = 4.0 * config.Layers * config.Channels * length;
        return batch * (2 * weights + attention + loraFlops);
    }
}

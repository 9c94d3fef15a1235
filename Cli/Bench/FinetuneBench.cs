using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Layers.Training;

namespace LoraRuntime.Cli.Bench;

/// <summary>
/// One LoRA fine-tuning step of a model with random weights, as <c>lora finetune</c> runs it: gradients zeroed, the
/// forward pass with the cross-entropy over B × T tokens, the backward pass through the frozen base into the adapter,
/// and the adapter's AdamW update. Reported as the median step ("finetune_step": shape [B, T, R]), the tokens it
/// trains per second, its GFLOP/s counted as 6 × the base's matrix parameters × tokens (the usual estimate, attention's
/// scores left out), and the bytes the model and adapter hold from the pool.
/// </summary>
internal static class FinetuneBench
{
    public static BenchRecord Run(Backend backend, LatencyModel model, int batch, int time, int rank, IReadOnlyList<string> targets, int warmup, int? reps,
        WeightStorage? storage = null)
    {
        var config = model.Config;
        if (time > config.BlockSize) throw new UsageException($"--time: T = {time} is longer than {model.Name}'s context {config.BlockSize}");
        long before = backend.Pool.Stats.BytesInUse;
        var formats = (storage ?? WeightStorage.Float32).FormatsFor(_ => WeightFormat.F32);
        using var gpt = new GptModel(backend, config with { BlockSize = time }, batch, training: true, trainParameters: false, formats);
        gpt.Initialize(7, scaleResidual: true);
        if (storage?.DoubleQuantized == true) gpt.DoubleQuantizeNf4();
        using var lora = new LoraModel(gpt);
        LoraAdapter adapter;
        try
        {
            adapter = lora.AddAdapter("bench", new LoraConfig
            {
                TargetModules = targets, Defaults = new LoraOptions { Rank = rank, Alpha = 2 * rank, Init = LoraInit.Random, Seed = 5 },
            });
        }
        catch (ArgumentException e)
        {
            throw new UsageException($"--targets: {e.Message}");
        }
        using var optimizer = new AdamW(adapter.Parameters);
        var random = new Random(3);
        using var ids = backend.Allocate(DType.I32, new Shape(batch, time));
        using var labels = backend.Allocate(DType.I32, new Shape(batch, time));
        backend.Upload(ids, Enumerable.Range(0, batch * time).Select(_ => random.Next(config.Vocabulary)).ToArray());
        backend.Upload(labels, Enumerable.Range(0, batch * time).Select(_ => random.Next(config.Vocabulary)).ToArray());
        float loss = float.NaN;
        void Step()
        {
            adapter.ZeroGradients();
            loss = gpt.Forward(ids, labels);
            gpt.Backward();
            optimizer.Update(1e-4f);
        }
        var timing = BenchTimer.Measure(Step, backend.Synchronize, warmup, reps, targetSeconds: 3);
        if (!float.IsFinite(loss)) throw new InvalidOperationException($"{model.Name}: the fine-tuning step's loss is {loss}");
        long matrices = gpt.Linears.Sum(l => (long)l.InFeatures * l.OutFeatures) + (long)config.Vocabulary * config.Channels;
        double tokens = (double)batch * time, flops = 6.0 * matrices * tokens;
        long held = backend.Pool.Stats.BytesInUse - before;
        return new BenchRecord("finetune_step", backend.Name, [batch, time, rank], model.Name, timing.MedianMs, flops / (timing.MedianMs * 1e6),
            timing.Reps, double.NaN, Ratio: tokens / (timing.MedianMs / 1000), ReservedBytes: held);
    }
}

using LoraRuntime.Distributed;

namespace LoraRuntime.Layers.Training;

/// <summary>
/// The evaluation of <c>lora train</c>: the mean cross-entropy of a model over a fixed number of [B, T] batches of
/// a split, drawn by a sampler seeded from the run's seed alone, so that every evaluation (at any step, of any
/// model: the original and its compressed copy) sees the same windows. The batch buffers are taken once. Under a
/// data-parallel <see cref="Communicator"/>, each rank evaluates its rows of every batch and one sum gathers the means.
/// </summary>
internal sealed class Evaluator : IDisposable
{
    /// <summary>Mixed into the seed so that evaluation windows differ from the training sampler's.</summary>
    private const ulong SamplerSalt = 0x5EED_E7A1UL;

    private readonly GptModel _model;
    private readonly Tensor _inputs, _targets;
    private readonly int[] _hostInputs, _hostTargets;
    private readonly Communicator _world;
    private readonly BatchShard _shard;
    private readonly double[] _sum = new double[1];

    /// <summary>
    /// An evaluator of <paramref name="model"/> on batches of <paramref name="batch"/> sequences of its block size; with
    /// <paramref name="world"/>, this rank's share of each batch.
    /// </summary>
    public Evaluator(GptModel model, int batch, Communicator? world = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        _world = world ?? Communicator.SingleProcess;
        _shard = batch < 1 ? BatchShard.Whole(batch) : BatchShard.Of(batch, _world.Rank, _world.Size);
        if (batch < 1 || _shard.Rows > model.Activations.MaxBatch)
            throw new ArgumentOutOfRangeException(nameof(batch), batch, $"batch: expected 1..{model.Activations.MaxBatch}, the model's reserved maximum B; got {batch}");
        _model = model;
        var shape = new Shape(_shard.Rows, model.Config.BlockSize);
        var backend = model.Parameters.Backend;
        _inputs = backend.Allocate(DType.I32, shape);
        _targets = backend.Allocate(DType.I32, shape);
        _hostInputs = new int[shape.Length];
        _hostTargets = new int[shape.Length];
    }

    /// <summary>Mean loss over <paramref name="iterations"/> batches of <paramref name="split"/>, from the sampler of <paramref name="seed"/>.</summary>
    public float MeanLoss(TokenBatches split, int iterations, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(split);
        if (iterations < 1) throw new ArgumentOutOfRangeException(nameof(iterations), iterations, "iterations: expected ≥ 1");
        if (split.BlockSize != _model.Config.BlockSize)
            throw new ArgumentException($"split: windows of T = {split.BlockSize} do not match the model's block size {_model.Config.BlockSize}", nameof(split));
        var random = new TrainingRandom(seed ^ SamplerSalt);
        double sum = 0;
        for (int i = 0; i < iterations; i++)
        {
            split.Next(ref random, _hostInputs, _hostTargets, _shard);
            _inputs.CopyFrom(_hostInputs);
            _targets.CopyFrom(_hostTargets);
            float loss = _model.Forward(_inputs, _targets);
            sum += loss * _shard.Weight; // the whole batch: a weight of exactly 1
        }
        if (_world.IsDistributed)
        {
            _sum[0] = sum;
            _world.AllReduceSum(_sum);
            sum = _sum[0];
        }
        return (float)(sum / iterations);
    }

    /// <summary>Returns the batch buffers.</summary>
    public void Dispose()
    {
        _inputs.Dispose();
        _targets.Dispose();
    }
}

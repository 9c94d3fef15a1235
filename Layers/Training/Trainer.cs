using System.Diagnostics;
using System.Text.Json;
using LoraRuntime.Distributed;
using LoraRuntime.IO;

namespace LoraRuntime.Layers.Training;

/// <summary>What to do when a step's loss or gradient norm is NaN or infinite.</summary>
internal enum NonFinitePolicy
{
    /// <summary>Stop with a <see cref="TrainingDivergedException"/> naming the step and the value.</summary>
    Stop,
    /// <summary>Drop the step's gradients, leave the parameters alone, and go on.</summary>
    Skip,
}

/// <summary>The hyper-parameters of a run (the defaults are the small Shakespeare recipe).</summary>
internal sealed record TrainOptions
{
    /// <summary>Optimizer steps.</summary>
    public int Iterations { get; init; } = 2000;
    /// <summary>B, sequences per micro-batch.</summary>
    public int Batch { get; init; } = 12;
    /// <summary>Micro-batches whose gradients add up to one step.</summary>
    public int Accumulation { get; init; } = 1;
    /// <summary>Peak learning rate.</summary>
    public double LearningRate { get; init; } = 1e-3;
    /// <summary>Final learning rate.</summary>
    public double MinLearningRate { get; init; } = 1e-4;
    /// <summary>Linear warm-up steps.</summary>
    public int Warmup { get; init; } = 100;
    /// <summary>Decoupled weight decay of matrices.</summary>
    public float WeightDecay { get; init; } = 0.1f;
    /// <summary>AdamW β₁.</summary>
    public float Beta1 { get; init; } = 0.9f;
    /// <summary>AdamW β₂.</summary>
    public float Beta2 { get; init; } = 0.99f;
    /// <summary>Global gradient-norm clip (0: none).</summary>
    public float Clip { get; init; } = 1f;
    /// <summary>Steps between evaluations.</summary>
    public int EvalEvery { get; init; } = 250;
    /// <summary>Batches averaged per evaluation.</summary>
    public int EvalIterations { get; init; } = 20;
    /// <summary>Seed of batch sampling (and of the model's initialisation, by the caller).</summary>
    public ulong Seed { get; init; } = 1337;
    /// <summary>On a non-finite loss or gradient norm.</summary>
    public NonFinitePolicy NonFinite { get; init; } = NonFinitePolicy.Stop;

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first bad option.</summary>
    public void Validate()
    {
        if (Iterations < 0) throw new ArgumentOutOfRangeException(nameof(Iterations), Iterations, "iterations must be ≥ 0");
        if (Batch < 1) throw new ArgumentOutOfRangeException(nameof(Batch), Batch, "batch must be ≥ 1");
        if (Accumulation < 1) throw new ArgumentOutOfRangeException(nameof(Accumulation), Accumulation, "accumulation must be ≥ 1");
        if (EvalEvery < 1) throw new ArgumentOutOfRangeException(nameof(EvalEvery), EvalEvery, "eval-every must be ≥ 1");
        if (EvalIterations < 1) throw new ArgumentOutOfRangeException(nameof(EvalIterations), EvalIterations, "eval-iters must be ≥ 1");
        if (!(Clip >= 0) || float.IsInfinity(Clip)) throw new ArgumentOutOfRangeException(nameof(Clip), Clip, "clip must be finite and ≥ 0");
        _ = new LearningRateSchedule(LearningRate, MinLearningRate, Warmup, Iterations);
    }
}

/// <summary>A training step's figures.</summary>
/// <param name="Step">0-based step just taken.</param>
/// <param name="Loss">Mean loss over the step's micro-batches.</param>
/// <param name="GradientNorm">Global norm before clipping.</param>
/// <param name="LearningRate">The rate used.</param>
/// <param name="Milliseconds">Wall time of the step.</param>
/// <param name="Skipped">True when a non-finite value made the step a no-op (policy Skip).</param>
/// <param name="AllReduceMilliseconds">Of <paramref name="Milliseconds"/>, the time spent summing gradients and loss over the ranks (0 in one process).</param>
internal readonly record struct StepResult(int Step, float Loss, float GradientNorm, double LearningRate, double Milliseconds, bool Skipped,
    double AllReduceMilliseconds = 0);

/// <summary>Thrown when a loss or gradient norm is not finite under <see cref="NonFinitePolicy.Stop"/>.</summary>
internal sealed class TrainingDivergedException(string message) : Exception(message);

/// <summary>
/// The training loop of a <see cref="GptModel"/> over one <see cref="ParameterSet"/>: the model's own (pre-training)
/// or an adapter's (LoRA fine-tuning, base frozen). One step: zero the gradients, forward and backward over
/// <see cref="TrainOptions.Accumulation"/> micro-batches, clip by global norm, check for NaN/Inf, AdamW at the
/// scheduled rate. Steps allocate nothing. Checkpoints hold the parameters, the optimizer's moments and step, and
/// the sampler's state, so a resumed run continues bit for bit.
/// <para>
/// Data parallel, under a <see cref="Communicator"/> of N ranks (PyTorch DDP's scheme): every rank holds the whole
/// model and draws the whole global batch of <see cref="TrainOptions.Batch"/> sequences from the same sampler, keeps
/// its <see cref="Shard"/> of the rows, and after the backward passes its gradients, weighted by its share of the rows,
/// are summed over the ranks in one allreduce of the flat gradient buffer (and the loss in a second of 8 bytes). Every
/// rank then clips and steps the same numbers, so parameters stay identical without a broadcast, and the batches, the
/// schedule and the result do not depend on N (up to the order of float sums). Only rank 0 writes checkpoints; they
/// hold nothing rank-specific, so a run resumes on any number of ranks.
/// </para>
/// </summary>
internal sealed class Trainer : IDisposable
{
    private readonly GptModel _model;
    private readonly ParameterSet _trained;
    private readonly TokenBatches _train, _validation;
    private readonly AdamW _optimizer;
    private readonly GradientClipping _clipping;
    private readonly LearningRateSchedule _schedule;
    private readonly Tensor _inputs, _targets;
    private readonly Evaluator _evaluator;
    private readonly int[] _hostInputs, _hostTargets;
    private readonly Communicator _world;
    private readonly double[] _loss = new double[1];
    private readonly IDropoutLayers? _dropout;
    private TrainingRandom _random;

    /// <summary>
    /// A trainer of <paramref name="trained"/> (the model's parameters or an adapter's) on <paramref name="train"/>; with
    /// <paramref name="world"/>, this rank's part of a data-parallel job (the model reserved for <see cref="Shard"/>'s rows);
    /// <paramref name="dropout"/> (a LoRA adapter's) is turned off to evaluate, draws the masks of this rank's rows, and
    /// continues its masks on resume.
    /// </summary>
    public Trainer(GptModel model, ParameterSet trained, TokenBatches train, TokenBatches validation, TrainOptions options,
        Communicator? world = null, IDropoutLayers? dropout = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(trained);
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(validation);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _world = world ?? Communicator.SingleProcess;
        Shard = BatchShard.Of(options.Batch, _world.Rank, _world.Size);
        if (Shard.Rows > model.Activations.MaxBatch)
            throw new ArgumentException(
                $"options: batch {Shard.Rows}{(Shard.IsWhole ? "" : $" (this rank's share of {options.Batch})")} is above the model's reserved maximum {model.Activations.MaxBatch}", nameof(options));
        if (train.BlockSize != model.Config.BlockSize || validation.BlockSize != model.Config.BlockSize)
            throw new ArgumentException($"train: batches of T = {train.BlockSize} do not match the model's block size {model.Config.BlockSize}", nameof(train));
        (_model, _trained, _train, _validation, Options) = (model, trained, train, validation, options);
        _optimizer = new AdamW(trained, options.Beta1, options.Beta2, 1e-8f, options.WeightDecay);
        _clipping = new GradientClipping(trained);
        _schedule = new LearningRateSchedule(options.LearningRate, options.MinLearningRate, options.Warmup, options.Iterations);
        var shape = new Shape(Shard.Rows, model.Config.BlockSize);
        var backend = model.Parameters.Backend;
        _inputs = backend.Allocate(DType.I32, shape);
        _targets = backend.Allocate(DType.I32, shape);
        _hostInputs = new int[shape.Length];
        _hostTargets = new int[shape.Length];
        _random = new TrainingRandom(options.Seed);
        _evaluator = new Evaluator(model, options.Batch, _world);
        _dropout = dropout;
        if (dropout is not null) dropout.BatchFirstRow = Shard.FirstRow;
    }

    /// <summary>The run's options.</summary>
    public TrainOptions Options { get; }

    /// <summary>The rows of each global batch this process trains on (all of them in one process).</summary>
    public BatchShard Shard { get; }

    /// <summary>The ranks this trainer runs with.</summary>
    public Communicator World => _world;

    /// <summary>Steps taken so far (the next step's index).</summary>
    public int Step { get; private set; }

    /// <summary>Steps skipped for non-finite values.</summary>
    public int SkippedSteps { get; private set; }

    /// <summary>One optimizer step.</summary>
    public StepResult TrainStep()
    {
        long start = Stopwatch.GetTimestamp();
        int step = Step;
        double rate = _schedule.RateAt(step);
        _trained.ZeroGradients();
        double loss = 0;
        for (int micro = 0; micro < Options.Accumulation; micro++)
        {
            NextBatch(_train, ref _random);
            loss += _model.Forward(_inputs, _targets);
            _model.Backward();
        }
        loss /= Options.Accumulation;
        // The mean over the global batch: each rank's mean weighted by its share of the rows, summed over the ranks.
        float scale = Shard.IsWhole ? 1f / Options.Accumulation : (float)(Shard.Weight / Options.Accumulation);
        if (scale != 1f) _trained.Backend.Scale(_trained.Gradients, _trained.Gradients, scale);
        double allReduce = 0;
        if (_world.IsDistributed)
        {
            long reduceStart = Stopwatch.GetTimestamp();
            _world.AllReduceSum(_trained.Gradients);
            _loss[0] = loss * Shard.Weight;
            _world.AllReduceSum(_loss);
            loss = _loss[0];
            allReduce = Stopwatch.GetElapsedTime(reduceStart).TotalMilliseconds;
        }
        float norm = _clipping.Clip(Options.Clip);
        bool skipped = false;
        if (!double.IsFinite(loss) || !float.IsFinite(norm))
        {
            if (Options.NonFinite == NonFinitePolicy.Stop)
                throw new TrainingDivergedException(
                    $"step {step}: the {(double.IsFinite(loss) ? $"gradient norm is {norm}" : $"loss is {loss}")} (learning rate {rate:G3}); " +
                    "lower the learning rate, or pass the skip policy to drop such steps");
            skipped = true;
            SkippedSteps++;
        }
        else
        {
            _optimizer.Update((float)rate);
        }
        Step = step + 1;
        return new StepResult(step, (float)loss, norm, rate, Stopwatch.GetElapsedTime(start).TotalMilliseconds, skipped, allReduce);
    }

    /// <summary>Mean loss over <see cref="TrainOptions.EvalIterations"/> batches of each split, from a fixed sampler (comparable across steps).</summary>
    public (float Train, float Validation) Evaluate() => (Evaluate(_train), Evaluate(_validation));

    private float Evaluate(TokenBatches split)
    {
        bool training = _dropout?.Training ?? false;
        if (_dropout is not null) _dropout.Training = false;
        try
        {
            return _evaluator.MeanLoss(split, Options.EvalIterations, Options.Seed);
        }
        finally
        {
            if (_dropout is not null) _dropout.Training = training;
        }
    }

    private void NextBatch(TokenBatches split, ref TrainingRandom random)
    {
        split.Next(ref random, _hostInputs, _hostTargets, Shard);
        _inputs.CopyFrom(_hostInputs);
        _targets.CopyFrom(_hostTargets);
    }

    /// <summary>
    /// Writes a checkpoint into a new folder <c>step-NNNNNNN</c> under <paramref name="directory"/> (parameters, moments,
    /// state), then points <c>latest</c> at it atomically: a crash mid-way leaves the previous checkpoint in force. In a
    /// data-parallel job only rank 0 writes (every rank holds the same state); the others return the folder's name.
    /// </summary>
    public string SaveCheckpoint(string directory)
    {
        string folder = Path.Combine(directory, $"step-{Step:D7}");
        if (_world.Rank != 0) return folder;
        Directory.CreateDirectory(folder);
        GptFiles.SaveParameters(_trained, Path.Combine(folder, "parameters.safetensors"), "lora-runtime-checkpoint");
        var moments = new SafetensorsWriter();
        moments.Add("m", _optimizer.FirstMoments);
        moments.Add("v", _optimizer.SecondMoments);
        moments.Save(Path.Combine(folder, "optimizer.safetensors"));
        using (var stream = new MemoryStream())
        {
            using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
            {
                json.WriteStartObject();
                json.WriteNumber("step", Step);
                json.WriteNumber("optimizer_step", _optimizer.Step);
                json.WriteNumber("skipped_steps", SkippedSteps);
                json.WriteStartArray("sampler_state");
                foreach (ulong word in _random.GetState()) json.WriteStringValue(word.ToString(System.Globalization.CultureInfo.InvariantCulture));
                json.WriteEndArray();
                json.WriteEndObject();
            }
            AtomicFile.WriteAllBytes(Path.Combine(folder, "state.json"), stream.ToArray());
        }
        AtomicFile.WriteAllBytes(Path.Combine(directory, "latest"), System.Text.Encoding.UTF8.GetBytes(Path.GetFileName(folder)));
        return folder;
    }

    /// <summary>
    /// Restores the checkpoint <c>latest</c> names under <paramref name="directory"/>. Every file is checked before the
    /// trainer changes: a truncated or corrupted checkpoint gives an <see cref="InvalidDataException"/> naming the
    /// file, and the trainer is left as it was only when the parameters have not been read yet.
    /// </summary>
    public void ResumeFrom(string directory)
    {
        string latest = Path.Combine(directory, "latest");
        if (!File.Exists(latest)) throw new FileNotFoundException($"{directory} holds no checkpoint ('latest' is missing)", latest);
        string folder = Path.Combine(directory, File.ReadAllText(latest).Trim());
        string statePath = Path.Combine(folder, "state.json");
        int step, optimizerStep, skipped;
        ulong[] sampler;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(statePath));
            var root = doc.RootElement;
            step = root.GetProperty("step").GetInt32();
            optimizerStep = root.GetProperty("optimizer_step").GetInt32();
            skipped = root.GetProperty("skipped_steps").GetInt32();
            sampler = root.GetProperty("sampler_state").EnumerateArray()
                .Select(e => ulong.Parse(e.GetString() ?? "", System.Globalization.CultureInfo.InvariantCulture)).ToArray();
            if (step < 0 || optimizerStep < 0 || skipped < 0) throw new FormatException("negative step counts");
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException or OverflowException or IOException)
        {
            throw new InvalidDataException($"{statePath}: not a valid checkpoint state: {e.Message}", e);
        }
        var random = TrainingRandom.FromState(sampler);
        using (var moments = SafetensorsReader.Open(Path.Combine(folder, "optimizer.safetensors")))
        {
            GptFiles.LoadParameters(_trained, Path.Combine(folder, "parameters.safetensors"));
            moments.LoadInto("m", _optimizer.FirstMoments);
            moments.LoadInto("v", _optimizer.SecondMoments);
        }
        _optimizer.RestoreStep(optimizerStep);
        (Step, SkippedSteps, _random) = (step, skipped, random);
        // Every step took Accumulation training passes (evaluation takes none): the masks continue where the run was.
        if (_dropout is not null) _dropout.TrainingPasses = (long)step * Options.Accumulation;
    }

    /// <summary>Returns the optimizer's and the batches' memory.</summary>
    public void Dispose()
    {
        _optimizer.Dispose();
        _clipping.Dispose();
        _inputs.Dispose();
        _targets.Dispose();
        _evaluator.Dispose();
    }
}

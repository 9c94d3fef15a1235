using LoraRuntime.Cpu;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Layers.Training;
using Xunit;

namespace LoraRuntime.Tests.Training;

/// <summary>The GPT and its training loop: gradients, learning, bit-for-bit resume, checkpoint errors, the NaN guard.</summary>
public sealed class GptTrainingTests : IDisposable
{
    private static readonly GptConfig Tiny = new(Vocabulary: 7, Layers: 2, Heads: 2, Channels: 8, BlockSize: 6);
    private readonly CpuBackend _cpu = new();
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "lora-train-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        _cpu.Dispose();
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private static int[] Pattern(int length) => Enumerable.Range(0, length).Select(i => (i * 3 + i / 7) % 7).ToArray();

    private (TokenBatches Train, TokenBatches Val) Data() => TokenBatches.Split(Pattern(600), Tiny.BlockSize);

    private static TrainOptions Options(int iterations) => new()
    {
        Iterations = iterations, Batch = 4, Warmup = 3, EvalEvery = 5, EvalIterations = 2, LearningRate = 1e-2, MinLearningRate = 1e-3, Seed = 42,
    };

    [Fact]
    public void GradientsMatchFiniteDifferences()
    {
        using var model = new GptModel(_cpu, Tiny, maxBatch: 2);
        model.Initialize(3);
        // Larger weights than GPT-2's 0.02 so that every path carries signal.
        foreach (var p in model.Parameters.Parameters)
            if (p.Shape.Rank == 2) _cpu.Scale(p.Value, p.Value, 10f);
        using var ids = _cpu.Allocate(DType.I32, new Shape(2, 5));
        using var targets = _cpu.Allocate(DType.I32, new Shape(2, 5));
        ids.CopyFrom([1, 2, 3, 4, 5, 6, 0, 1, 2, 3]);
        targets.CopyFrom([2, 3, 4, 5, 6, 0, 1, 2, 3, 4]);
        model.Parameters.ZeroGradients();
        model.Forward(ids, targets);
        model.Backward();
        var values = model.Parameters.Values.AsSpan();
        var gradients = model.Parameters.Gradients.AsSpan();
        foreach (var p in model.Parameters.Parameters)
        {
            foreach (long i in new[] { 0L, p.Shape.Length / 2, p.Shape.Length - 1 })
            {
                int at = checked((int)(p.Offset + i));
                float saved = values[at];
                const float h = 1e-2f;
                values[at] = saved + h;
                double up = model.Forward(ids, targets);
                values[at] = saved - h;
                double down = model.Forward(ids, targets);
                values[at] = saved;
                double numeric = (up - down) / (2 * h);
                double analytic = gradients[at];
                Assert.True(Math.Abs(numeric - analytic) <= 2e-3 + 2e-2 * Math.Abs(numeric),
                    $"{p.Name}[{i}]: analytic {analytic:G6}, finite difference {numeric:G6}");
            }
        }
    }

    [Fact]
    public void LearnsARepeatingPattern()
    {
        var (train, val) = Data();
        using var model = new GptModel(_cpu, Tiny, maxBatch: 4);
        model.Initialize(1);
        using var trainer = new Trainer(model, model.Parameters, train, val, Options(150));
        float first = trainer.Evaluate().Validation;
        for (int i = 0; i < 150; i++) trainer.TrainStep();
        float last = trainer.Evaluate().Validation;
        Assert.True(last < 0.4f * first, $"validation loss {first} → {last}");
    }

    [Fact]
    public void ResumeContinuesBitForBit()
    {
        var (train, val) = Data();
        float[] straight;
        float[] straightLosses = new float[10];
        using (var model = new GptModel(_cpu, Tiny, maxBatch: 4))
        {
            model.Initialize(9);
            using var trainer = new Trainer(model, model.Parameters, train, val, Options(10));
            for (int i = 0; i < 10; i++) straightLosses[i] = trainer.TrainStep().Loss;
            straight = model.Parameters.Values.ToArray();
        }
        using (var model = new GptModel(_cpu, Tiny, maxBatch: 4))
        {
            model.Initialize(9);
            using var trainer = new Trainer(model, model.Parameters, train, val, Options(10));
            for (int i = 0; i < 5; i++) trainer.TrainStep();
            trainer.SaveCheckpoint(_dir);
        }
        using (var model = new GptModel(_cpu, Tiny, maxBatch: 4))
        {
            model.Initialize(12345); // different weights: the checkpoint must restore everything
            using var trainer = new Trainer(model, model.Parameters, train, val, Options(10));
            trainer.ResumeFrom(_dir);
            Assert.Equal(5, trainer.Step);
            for (int i = 5; i < 10; i++) Assert.Equal(straightLosses[i], trainer.TrainStep().Loss);
            Assert.Equal(straight, model.Parameters.Values.ToArray());
        }
    }

    [Fact]
    public void A_lora_trainer_evaluates_without_dropout_and_a_resumed_run_continues_its_masks()
    {
        var (train, val) = Data();
        var options = Options(6) with { Accumulation = 2 };
        float[] Run(int resumeAt, bool save)
        {
            using var model = new GptModel(_cpu, Tiny, maxBatch: 4, training: true, trainParameters: false);
            model.Initialize(4);
            using var lora = new LoraModel(model);
            var adapter = lora.AddAdapter("d", new LoraConfig
            {
                TargetModules = ["q", "v", "fc"], Defaults = new LoraOptions { Rank = 2, Alpha = 4, Dropout = 0.5f, Init = LoraInit.Random, Seed = 7 },
            });
            using var trainer = new Trainer(model, adapter.Parameters, train, val, options, dropout: adapter);
            // Evaluation draws no masks: twice the same numbers, and training mode comes back after.
            var first = trainer.Evaluate();
            Assert.Equal(first, trainer.Evaluate());
            Assert.True(adapter.Training);
            if (resumeAt > 0) trainer.ResumeFrom(_dir);
            for (int step = trainer.Step; step < options.Iterations; step++)
            {
                trainer.TrainStep();
                if (save && trainer.Step == 3) trainer.SaveCheckpoint(_dir);
            }
            return adapter.Parameters.Values.ToArray();
        }
        var straight = Run(resumeAt: 0, save: true);
        // Resumed at step 3, the masks of steps 3–5 are the uninterrupted run's: the same adapter, bit for bit.
        Assert.Equal(straight, Run(resumeAt: 3, save: false));
    }

    [Fact]
    public void CorruptCheckpointIsRefusedAndTheGoodOneStays()
    {
        var (train, val) = Data();
        using var model = new GptModel(_cpu, Tiny, maxBatch: 4);
        model.Initialize(2);
        using var trainer = new Trainer(model, model.Parameters, train, val, Options(10));
        trainer.TrainStep();
        string good = trainer.SaveCheckpoint(_dir);
        trainer.TrainStep();
        string bad = trainer.SaveCheckpoint(_dir);
        string file = Path.Combine(bad, "parameters.safetensors");
        var bytes = File.ReadAllBytes(file);
        File.WriteAllBytes(file, bytes[..(bytes.Length / 2)]);
        var e = Assert.Throws<InvalidDataException>(() => trainer.ResumeFrom(_dir));
        Assert.Contains("parameters.safetensors", e.Message);
        // The earlier checkpoint is intact and loads.
        File.WriteAllText(Path.Combine(_dir, "latest"), Path.GetFileName(good));
        trainer.ResumeFrom(_dir);
        Assert.Equal(1, trainer.Step);
        File.WriteAllText(Path.Combine(good, "state.json"), "{\"step\": ");
        Assert.Throws<InvalidDataException>(() => trainer.ResumeFrom(_dir));
    }

    [Fact]
    public void NonFiniteLossStopsOrSkips()
    {
        var (train, val) = Data();
        using var model = new GptModel(_cpu, Tiny, maxBatch: 4);
        model.Initialize(4);
        model.Parameters["ln_f.weight"].Value.AsSpan()[0] = float.NaN;
        using (var stop = new Trainer(model, model.Parameters, train, val, Options(5)))
        {
            var e = Assert.Throws<TrainingDivergedException>(() => stop.TrainStep());
            Assert.Contains("step 0", e.Message);
        }
        var before = model.Parameters.Values.ToArray();
        using var skip = new Trainer(model, model.Parameters, train, val, Options(5) with { NonFinite = NonFinitePolicy.Skip });
        var result = skip.TrainStep();
        Assert.True(result.Skipped);
        Assert.Equal(1, skip.SkippedSteps);
        var after = model.Parameters.Values.ToArray();
        for (int i = 0; i < before.Length; i++)
            Assert.True(before[i].Equals(after[i]), $"element {i}: {before[i]} → {after[i]}");
    }

    [Fact]
    public void WarmStepsAllocateNothing()
    {
        var (train, val) = Data();
        using var model = new GptModel(_cpu, Tiny, maxBatch: 4);
        model.Initialize(5);
        using var trainer = new Trainer(model, model.Parameters, train, val, Options(50) with { Accumulation = 2 });
        for (int i = 0; i < 3; i++) trainer.TrainStep();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10; i++) trainer.TrainStep();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void SavedModelLoadsWithTheSameOutputs()
    {
        using var model = new GptModel(_cpu, Tiny, maxBatch: 1, training: false, trainParameters: false);
        model.Initialize(6);
        var tokenizer = new LoraRuntime.Layers.Text.CharTokenizer("abcdefg");
        GptFiles.Save(model, tokenizer, _dir);
        var (loaded, loadedTokenizer, names) = GptFiles.Load(_cpu, _dir, maxBatch: 1);
        using (loaded)
        {
            Assert.Equal("abcdefg", Assert.IsType<LoraRuntime.Layers.Text.CharTokenizer>(loadedTokenizer).Vocabulary);
            Assert.Equal(ModelLayout.LoraRuntime, names);
            using var ids = _cpu.Allocate(DType.I32, new Shape(1, 4));
            ids.CopyFrom([0, 3, 6, 2]);
            model.Forward(ids);
            loaded.Forward(ids);
            Assert.Equal(model.Logits.ToArray(), loaded.Logits.ToArray());
        }
        File.WriteAllText(Path.Combine(_dir, GptFiles.ConfigFile), "{\"vocab_size\": 7}");
        Assert.Throws<InvalidDataException>(() => GptFiles.Load(_cpu, _dir, maxBatch: 1));
    }
}

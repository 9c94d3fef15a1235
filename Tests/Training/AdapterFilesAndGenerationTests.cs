using LoraRuntime.Layers.Serving;
using LoraRuntime.Cpu;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Layers.Text;
using LoraRuntime.Layers.Training;
using Xunit;

namespace LoraRuntime.Tests.Training;

public sealed class AdapterFilesAndGenerationTests : IDisposable
{
    private static readonly GptConfig Tiny = new(Vocabulary: 7, Layers: 2, Heads: 2, Channels: 8, BlockSize: 6);
    private readonly CpuBackend _cpu = new();
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "lora-peft-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        _cpu.Dispose();
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private GptModel Model()
    {
        var model = new GptModel(_cpu, Tiny, maxBatch: 1, training: false, trainParameters: false);
        model.Initialize(11);
        return model;
    }

    [Fact]
    public void PeftAdapterRoundTripsWithItsKeysAndGivesTheSameLogits()
    {
        var config = new LoraConfig
        {
            TargetModules = ["q", "v", "fc"],
            Defaults = new LoraOptions { Rank = 2, Alpha = 4, Init = LoraInit.Random, Seed = 3 },
            RankPattern = new Dictionary<string, int> { ["blocks.1.mlp.fc"] = 3 },
        };
        using var ids = _cpu.Allocate(DType.I32, new Shape(1, 5));
        ids.CopyFrom([1, 5, 2, 6, 0]);
        float[] expected;
        using (var model = Model())
        using (var lora = new LoraModel(model))
        {
            var adapter = lora.AddAdapter("a", config);
            model.Forward(ids);
            expected = model.Logits.ToArray();
            PeftAdapterFiles.Save(adapter, config, _dir, "tiny");
        }
        using (var reader = LoraRuntime.IO.SafetensorsReader.Open(Path.Combine(_dir, PeftAdapterFiles.WeightsFile)))
        {
            Assert.Equal([2, 8], reader["base_model.model.blocks.0.attn.q.lora_A.weight"].Shape);
            Assert.Equal([32, 3], reader["base_model.model.blocks.1.mlp.fc.lora_B.weight"].Shape);
        }
        var read = PeftAdapterFiles.ReadConfig(_dir);
        Assert.Equal(["q", "v", "fc"], read.TargetModules);
        Assert.Equal(3, read.RankPattern["blocks.1.mlp.fc"]);
        using (var model = Model())
        using (var lora = new LoraModel(model))
        {
            PeftAdapterFiles.Load(lora, "b", _dir);
            model.Forward(ids);
            Assert.Equal(expected, model.Logits.ToArray());
        }
        // A key with no place in the model is refused, naming it.
        var writer = new LoraRuntime.IO.SafetensorsWriter();
        using (var reader = LoraRuntime.IO.SafetensorsReader.Open(Path.Combine(_dir, PeftAdapterFiles.WeightsFile)))
            foreach (var e in reader.Entries)
            {
                var values = new float[e.ElementCount];
                reader.ReadFloat32(e.Name, values);
                writer.Add(e.Name, values, e.Shape.Select(d => (int)d).ToArray());
            }
        writer.Add("base_model.model.blocks.9.attn.q.lora_A.weight", new float[16], 2, 8);
        writer.Save(Path.Combine(_dir, PeftAdapterFiles.WeightsFile));
        using (var model = Model())
        using (var lora = new LoraModel(model))
        {
            var e = Assert.Throws<InvalidDataException>(() => PeftAdapterFiles.Load(lora, "c", _dir));
            Assert.Contains("blocks.9.attn.q", e.Message);
        }
    }

    [Fact]
    public void GenerationIsDeterministicPerSeedAndGreedyIsArgmax()
    {
        using var model = Model();
        using var generator = new Generator(model);
        var a = generator.Generate([1, 2], 20, new SamplingOptions(0.9f, 3, Seed: 5));
        var b = generator.Generate([1, 2], 20, new SamplingOptions(0.9f, 3, Seed: 5));
        Assert.Equal(a, b);
        Assert.Equal(22, a.Length);
        Assert.All(a, id => Assert.InRange(id, 0, 6));
        var random = new TrainingRandom(1);
        var sampler = new TokenSampler(4);
        Assert.Equal(2, sampler.Sample([0.1f, 0.2f, 3f, -1f], new SamplingOptions(0f), 1f, ref random));
        // Top-1 is greedy whatever the temperature.
        Assert.Equal(2, sampler.Sample([0.1f, 0.2f, 3f, -1f], new SamplingOptions(5f, 1), 1f, ref random));
        Assert.Throws<ArgumentOutOfRangeException>(() => generator.Generate([9], 1, new SamplingOptions()));
    }

    [Fact]
    public void SpeakerSplitSeparatesOneCharactersBlocks()
    {
        string text = "ROMEO:\nHi.\n\nJULIET:\nHello.\n\nROMEO:\nBye.\n\nJULIET:\nAdieu.";
        var (mine, others) = SpeakerSplit.Split(text, "juliet");
        Assert.Equal("JULIET:\nHello.\n\nJULIET:\nAdieu.", mine);
        Assert.Equal("ROMEO:\nHi.\n\nROMEO:\nBye.", others);
        Assert.Throws<ArgumentException>(() => SpeakerSplit.Split(text, "HAMLET"));
    }
}

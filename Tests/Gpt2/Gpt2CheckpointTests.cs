using LoraRuntime.Cpu;
using LoraRuntime.IO;
using LoraRuntime.Layers;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Gpt2;

public sealed class Gpt2CheckpointTests : IDisposable
{
    private static readonly int[] Ids = [3, 0, 7, 10, 2, 5];
    private readonly CpuBackend _cpu = new();
    private readonly Gpt2Fixture _files = new();

    public void Dispose()
    {
        _cpu.Dispose();
        _files.Dispose();
    }

    private float[] Logits(GptModel model, int[] ids)
    {
        using var tensor = _cpu.Allocate(DType.I32, new Shape(1, ids.Length));
        tensor.CopyFrom(ids);
        model.Forward(tensor);
        return model.Logits.ToArray();
    }

    [Theory]
    [InlineData(SafetensorsDType.F32, true)]
    [InlineData(SafetensorsDType.F16, false)]
    [InlineData(SafetensorsDType.BF16, true)]
    public void HuggingFaceCheckpointGivesTheLogitsOfAFloat64Gpt2(SafetensorsDType dtype, bool prefixed)
    {
        string dir = _files.Write(Gpt2Fixture.RandomTensors(seed: 40), dtype, prefixed);
        Assert.Equal(ModelLayout.Gpt2, ModelDirectory.DetectLayout(dir));
        // The reference reads the values as stored (F16 and BF16 round them), then computes HF's GPT-2 in float64.
        var reference = new Gpt2Reference(Gpt2Fixture.ReadBack(dir), Gpt2Fixture.Layers, Gpt2Fixture.Heads, Gpt2Fixture.Channels);
        using var model = Gpt2Checkpoint.Load(_cpu, dir, maxBatch: 1);
        Assert.Equal(new GptConfig(Gpt2Fixture.Vocabulary, Gpt2Fixture.Layers, Gpt2Fixture.Heads, Gpt2Fixture.Channels, Gpt2Fixture.Positions), model.Config);
        var expected = reference.Logits(Ids);
        double error = Reference.RelativeError(Logits(model, Ids), expected);
        Assert.True(error <= 1e-5, $"relative error {error:E2} > 1e-5");
        // A wrong transposition or mapping would be far off: the logits are not all alike.
        Assert.True(expected.Max() - expected.Min() > 1);
    }

    [Fact]
    public void LayerNormEpsilonIsCarriedFromTheConfig()
    {
        string dir = _files.Write(Gpt2Fixture.RandomTensors(seed: 41), config: Gpt2Fixture.ConfigJson(("layer_norm_epsilon", "0.5")));
        using var model = Gpt2Checkpoint.Load(_cpu, dir, maxBatch: 1);
        Assert.Equal(0.5f, model.Config.LayerNormEpsilon);
        var reference = new Gpt2Reference(Gpt2Fixture.ReadBack(dir), Gpt2Fixture.Layers, Gpt2Fixture.Heads, Gpt2Fixture.Channels, epsilon: 0.5f);
        Assert.True(Reference.RelativeError(Logits(model, Ids), reference.Logits(Ids)) <= 1e-5);
        var standard = new Gpt2Reference(Gpt2Fixture.ReadBack(dir), Gpt2Fixture.Layers, Gpt2Fixture.Heads, Gpt2Fixture.Channels);
        Assert.True(Reference.RelativeError(Logits(model, Ids), standard.Logits(Ids)) > 1e-3);
    }

    [Theory]
    [InlineData(SafetensorsDType.F32, false)]
    [InlineData(SafetensorsDType.F32, true)]
    [InlineData(SafetensorsDType.F16, false)]
    public void SaveThenLoadRoundTripsBitExact(SafetensorsDType dtype, bool prefixed)
    {
        string original = _files.Write(Gpt2Fixture.RandomTensors(seed: 42), dtype, prefixed: true);
        using var model = Gpt2Checkpoint.Load(_cpu, original, maxBatch: 1);
        string copy = Path.Combine(_files.Root, "copy");
        Gpt2Checkpoint.Save(model, copy, dtype, prefixed);
        using (var reader = SafetensorsReader.Open(Path.Combine(copy, GptFiles.ModelFile)))
        {
            string p = prefixed ? "transformer." : "";
            Assert.Equal([8L, 24L], reader[p + "h.0.attn.c_attn.weight"].Shape);
            Assert.Equal([32L, 8L], reader[p + "h.1.mlp.c_proj.weight"].Shape);
            Assert.Equal(dtype, reader[p + "wte.weight"].DType);
        }
        Assert.Equal(ModelLayout.Gpt2, ModelDirectory.DetectLayout(copy));
        using var loaded = Gpt2Checkpoint.Load(_cpu, copy, maxBatch: 1);
        Assert.Equal(model.Config, loaded.Config);
        foreach (var p in model.Parameters.Parameters)
            Assert.Equal(p.Value.ToArray(), loaded.Parameters[p.Name].Value.ToArray());
        // And the file we write reads back as the original's stored values, tensor by tensor.
        var stored = Gpt2Fixture.ReadBack(original);
        foreach (var (name, values) in Gpt2Fixture.ReadBack(copy)) Assert.Equal(stored[name], values);
    }

    [Fact]
    public void OurLayoutStillLoadsAndIsToldApart()
    {
        var config = new GptConfig(7, 1, 2, 8, 4, LayerNormEpsilon: 1e-6f);
        using var model = new GptModel(_cpu, config, maxBatch: 1, training: false, trainParameters: false);
        model.Initialize(3);
        string dir = Path.Combine(_files.Root, "ours");
        GptFiles.Save(model, new LoraRuntime.Layers.Text.CharTokenizer("abcdefg"), dir);
        Assert.Equal(ModelLayout.LoraRuntime, ModelDirectory.DetectLayout(dir));
        var (loaded, tokenizer, layout) = ModelDirectory.Load(_cpu, dir, maxBatch: 1);
        using (loaded)
        {
            Assert.Equal(ModelLayout.LoraRuntime, layout);
            Assert.Equal(config, loaded.Config);
            Assert.Equal(7, Assert.IsAssignableFrom<LoraRuntime.Layers.Text.ITokenizer>(tokenizer).VocabularySize);
        }
    }

    public static TheoryData<string, string, string> BadConfigs => new()
    {
        { "activation_function", "\"relu\"", "activation_function" },
        { "activation_function", "\"gelu\"", "gelu_new" },
        { "scale_attn_by_inverse_layer_idx", "true", "scale_attn_by_inverse_layer_idx" },
        { "reorder_and_upcast_attn", "true", "reorder_and_upcast_attn" },
        { "scale_attn_weights", "false", "scale_attn_weights" },
        { "add_cross_attention", "true", "add_cross_attention" },
        { "tie_word_embeddings", "false", "tie_word_embeddings" },
        { "n_inner", "16", "n_inner" },
        { "n_ctx", "7", "n_ctx" },
        { "n_head", "3", "Channels" },
        { "n_embd", "\"8\"", "n_embd" },
        { "model_type", "\"gpt_neo\"", "model_type" },
    };

    [Theory]
    [MemberData(nameof(BadConfigs))]
    public void UnsupportedConfigsAreRefusedNamingTheField(string field, string raw, string mentioned)
    {
        string dir = _files.Write(Gpt2Fixture.RandomTensors(seed: 43), config: Gpt2Fixture.ConfigJson((field, raw)));
        var e = Assert.Throws<InvalidDataException>(() => Gpt2Checkpoint.Load(_cpu, dir, maxBatch: 1));
        Assert.Contains(mentioned, e.Message);
        Assert.Contains("config.json", e.Message);
    }

    [Fact]
    public void MissingExtraAndMisshapenTensorsAreRefusedNamingTheKeyAndShapes()
    {
        var tensors = Gpt2Fixture.RandomTensors(seed: 44);
        tensors.Remove("h.1.mlp.c_fc.bias");
        var e = Assert.Throws<InvalidDataException>(() => Gpt2Checkpoint.Load(_cpu, _files.Write(tensors, name: "missing"), maxBatch: 1));
        Assert.Contains("'transformer.h.1.mlp.c_fc.bias'", e.Message);
        Assert.Contains("[32]", e.Message);

        tensors = Gpt2Fixture.RandomTensors(seed: 44);
        tensors["h.0.attn.c_attn.weight"] = (new float[24 * 8], [24, 8]); // [out, in]: nn.Linear's layout, not Conv1D's
        e = Assert.Throws<InvalidDataException>(() => Gpt2Checkpoint.Load(_cpu, _files.Write(tensors, name: "transposed"), maxBatch: 1));
        Assert.Contains("'transformer.h.0.attn.c_attn.weight'", e.Message);
        Assert.Contains("[24, 8]", e.Message);
        Assert.Contains("expected [8, 24]", e.Message);

        tensors = Gpt2Fixture.RandomTensors(seed: 44);
        tensors["h.0.attn.q_proj.weight"] = (new float[64], [8, 8]);
        e = Assert.Throws<InvalidDataException>(() => Gpt2Checkpoint.Load(_cpu, _files.Write(tensors, name: "extra"), maxBatch: 1));
        Assert.Contains("'transformer.h.0.attn.q_proj.weight'", e.Message);

        tensors = Gpt2Fixture.RandomTensors(seed: 44);
        string dir = _files.Write(tensors, head: false, name: "untied");
        var writer = new SafetensorsWriter();
        foreach (var (key, (values, dims)) in tensors) writer.Add("transformer." + key, values, dims);
        var head = (float[])tensors["wte.weight"].Values.Clone();
        head[5] += 1;
        writer.Add("lm_head.weight", head, Gpt2Fixture.Vocabulary, Gpt2Fixture.Channels);
        writer.Save(Path.Combine(dir, GptFiles.ModelFile));
        e = Assert.Throws<InvalidDataException>(() => Gpt2Checkpoint.Load(_cpu, dir, maxBatch: 1));
        Assert.Contains("lm_head.weight", e.Message);
        Assert.Contains("untied", e.Message);

        var other = Path.Combine(_files.Root, "neo");
        Directory.CreateDirectory(other);
        File.WriteAllText(Path.Combine(other, GptFiles.ConfigFile), "{\"model_type\": \"gpt_neo\", \"n_positions\": 8}");
        e = Assert.Throws<InvalidDataException>(() => ModelDirectory.DetectLayout(other));
        Assert.Contains("'gpt_neo'", e.Message);
        File.WriteAllText(Path.Combine(other, GptFiles.ConfigFile), "[1, 2");
        Assert.Throws<InvalidDataException>(() => ModelDirectory.DetectLayout(other));
        string pickled = _files.Write(Gpt2Fixture.RandomTensors(seed: 45), name: "pickled");
        File.Move(Path.Combine(pickled, GptFiles.ModelFile), Path.Combine(pickled, "pytorch_model.bin"));
        var missing = Assert.Throws<FileNotFoundException>(() => Gpt2Checkpoint.Load(_cpu, pickled, maxBatch: 1));
        Assert.Contains("pytorch_model.bin", missing.Message);
        Assert.Throws<FileNotFoundException>(() => ModelDirectory.DetectLayout(_files.Root));
        Assert.Throws<DirectoryNotFoundException>(() => ModelDirectory.DetectLayout(Path.Combine(_files.Root, "nowhere")));
    }

    [Fact]
    public void GeluMatchesGpt2sGeluNew()
    {
        // Our GELU is x·σ(2u), GPT-2's gelu_new 0.5·x·(1 + tanh u): the same function; in float32 they agree to rounding.
        var inputs = Enumerable.Range(-400, 801).Select(i => i / 40f).ToArray();
        using var x = _cpu.Allocate(DType.F32, new Shape(1, 1, inputs.Length));
        using var y = _cpu.Allocate(DType.F32, new Shape(1, 1, inputs.Length));
        x.CopyFrom(inputs);
        _cpu.GeluForward(y, x);
        var actual = y.ToArray();
        for (int i = 0; i < inputs.Length; i++)
            Assert.True(Math.Abs(actual[i] - Gpt2Reference.GeluNew(inputs[i])) <= 2e-6 * Math.Max(1, Math.Abs(inputs[i])), $"GELU({inputs[i]}) = {actual[i]}");
    }
}

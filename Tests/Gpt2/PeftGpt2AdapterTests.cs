using LoraRuntime.Cpu;
using LoraRuntime.IO;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Gpt2;

public sealed class PeftGpt2AdapterTests : IDisposable
{
    private const int C = Gpt2Fixture.Channels;
    private static readonly int[] Ids = [4, 1, 9, 0, 6];
    private readonly CpuBackend _cpu = new();
    private readonly Gpt2Fixture _files = new();

    public void Dispose()
    {
        _cpu.Dispose();
        _files.Dispose();
    }

    /// <summary>adapter_config.json as PEFT writes it for GPT-2, with <paramref name="overrides"/> (raw JSON) replacing fields.</summary>
    private static string PeftConfig(params (string Name, string Raw)[] overrides)
    {
        var fields = new List<(string Name, string Raw)>
        {
            ("alpha_pattern", "{\"attn.c_proj\": 3}"), ("auto_mapping", "null"), ("base_model_name_or_path", "\"gpt2\""), ("bias", "\"none\""),
            ("fan_in_fan_out", "true"), ("inference_mode", "true"), ("init_lora_weights", "true"), ("layer_replication", "null"),
            ("layers_pattern", "null"), ("layers_to_transform", "null"), ("loftq_config", "{}"), ("lora_alpha", "8"), ("lora_dropout", "0.05"),
            ("megatron_config", "null"), ("megatron_core", "\"megatron.core\""), ("modules_to_save", "null"), ("peft_type", "\"LORA\""), ("r", "4"),
            ("rank_pattern", "{\"h.1.mlp.c_fc\": 2}"), ("revision", "null"), ("target_modules", "[\"c_attn\", \"c_proj\", \"c_fc\"]"),
            ("task_type", "\"CAUSAL_LM\""), ("use_dora", "false"), ("use_rslora", "false"),
        };
        foreach (var (name, raw) in overrides)
        {
            fields.RemoveAll(f => f.Name == name);
            fields.Add((name, raw));
        }
        return "{\n" + string.Join(",\n", fields.Select(f => $"  \"{f.Name}\": {f.Raw}")) + "\n}\n";
    }

    /// <summary>
    /// Writes a PEFT adapter over every c_attn, c_proj and c_fc (rank 2 on h.1.mlp.c_fc, α = 3 on attn.c_proj, as the
    /// config's patterns say) and returns the reference adapters by module name.
    /// </summary>
    private Dictionary<string, ReferenceLora> WriteAdapter(string dir, string config, bool dora = false, bool rsLora = false, string prefix = "transformer.",
        Action<SafetensorsWriter>? extra = null)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, PeftAdapterFiles.ConfigFile), config);
        var writer = new SafetensorsWriter();
        var adapters = new Dictionary<string, ReferenceLora>(StringComparer.Ordinal);
        int seed = 500;
        for (int l = 0; l < Gpt2Fixture.Layers; l++)
            foreach (var (module, fanIn, fanOut) in new[] { ("attn.c_attn", C, 3 * C), ("attn.c_proj", C, C), ("mlp.c_fc", C, 4 * C), ("mlp.c_proj", 4 * C, C) })
            {
                string name = $"h.{l}.{module}";
                int rank = name == "h.1.mlp.c_fc" ? 2 : 4;
                double alpha = module == "attn.c_proj" ? 3 : 8;
                var a = Reference.Random(rank * fanIn, seed++);
                var b = Reference.Random(fanOut * rank, seed++);
                for (int i = 0; i < b.Length; i++) b[i] *= 0.3f;
                string key = $"base_model.model.{prefix}{name}";
                writer.Add(key + ".lora_A.weight", a, rank, fanIn);
                writer.Add(key + ".lora_B.weight", b, fanOut, rank);
                double[]? magnitude = null;
                if (dora)
                {
                    var m = Reference.Random(fanOut, seed++);
                    for (int i = 0; i < m.Length; i++) m[i] = 1 + 0.5f * m[i];
                    writer.Add(key + ".lora_magnitude_vector", m, fanOut);
                    magnitude = Reference.ToDouble(m);
                }
                adapters[name] = new ReferenceLora(Reference.ToDouble(a), Reference.ToDouble(b), rank, rsLora ? alpha / Math.Sqrt(rank) : alpha / rank, magnitude);
            }
        extra?.Invoke(writer);
        writer.Save(Path.Combine(dir, PeftAdapterFiles.WeightsFile));
        return adapters;
    }

    private float[] Logits(GptModel model)
    {
        using var ids = _cpu.Allocate(DType.I32, new Shape(1, Ids.Length));
        ids.CopyFrom(Ids);
        model.Forward(ids);
        return model.Logits.ToArray();
    }

    [Theory]
    [InlineData(false, false, "transformer.")]
    [InlineData(false, true, "")]
    [InlineData(true, false, "transformer.")]
    public void Gpt2PeftAdapterGivesTheLogitsOfFloat64Math(bool dora, bool rsLora, string keyPrefix)
    {
        string baseDir = _files.Write(Gpt2Fixture.RandomTensors(seed: 60));
        string adapterDir = Path.Combine(_files.Root, "adapter");
        var config = PeftConfig(("use_dora", dora ? "true" : "false"), ("use_rslora", rsLora ? "true" : "false"), ("lora_dropout", dora ? "0" : "0.05"));
        var adapters = WriteAdapter(adapterDir, config, dora, rsLora, keyPrefix);
        var reference = new Gpt2Reference(Gpt2Fixture.ReadBack(baseDir), Gpt2Fixture.Layers, Gpt2Fixture.Heads, C);
        var plain = reference.Logits(Ids);
        foreach (var (name, weights) in adapters) reference.Adapters[name] = weights;
        var expected = reference.Logits(Ids);

        using var model = Gpt2Checkpoint.Load(_cpu, baseDir, maxBatch: 1);
        using var lora = new LoraModel(model);
        var adapter = PeftAdapterFiles.Load(lora, "peft", adapterDir, ModelLayout.Gpt2);
        adapter.Training = false;
        Assert.Equal(2 * 4, adapter.Modules.Count);
        Assert.Equal(2, adapter.Modules.Single(w => w.Module.Path == "blocks.1.mlp.fc").Rank);
        double error = Reference.RelativeError(Logits(model), expected);
        Assert.True(error <= 1e-5, $"relative error {error:E2} > 1e-5");
        // The adapter matters: without it the logits are far from these.
        Assert.True(Reference.RelativeError(Logits(model), plain) > 1e-2);
    }

    [Fact]
    public void OurGpt2AdaptersSaveInPeftsLayoutAndLoadBackBitExact()
    {
        string baseDir = _files.Write(Gpt2Fixture.RandomTensors(seed: 61));
        var config = new LoraConfig
        {
            TargetModules = ["qkv", "proj"],
            Defaults = new LoraOptions { Rank = 3, Alpha = 6, Init = LoraInit.Random, Seed = 9 },
            RankPattern = new Dictionary<string, int> { ["blocks.0.attn.qkv"] = 2 },
        };
        string dir = Path.Combine(_files.Root, "saved");
        float[] expected;
        using (var model = Gpt2Checkpoint.Load(_cpu, baseDir, maxBatch: 1))
        using (var lora = new LoraModel(model))
        {
            var adapter = lora.AddAdapter("a", config);
            expected = Logits(model);
            PeftAdapterFiles.Save(adapter, config, dir, "gpt2", ModelLayout.Gpt2);
        }
        using (var reader = SafetensorsReader.Open(Path.Combine(dir, PeftAdapterFiles.WeightsFile)))
        {
            Assert.Equal([2L, C], reader["base_model.model.transformer.h.0.attn.c_attn.lora_A.weight"].Shape);
            Assert.Equal([3L * C, 2L], reader["base_model.model.transformer.h.0.attn.c_attn.lora_B.weight"].Shape);
            Assert.Equal([C, 3L], reader["base_model.model.transformer.h.1.mlp.c_proj.lora_B.weight"].Shape);
            Assert.Equal(8, reader.Entries.Count);
        }
        var peft = PeftAdapterFiles.ReadPeftConfig(dir);
        Assert.True(peft.FanInFanOut);
        Assert.Equal("false", peft.InitLoraWeights);
        Assert.Equal(["transformer.h.0.attn.c_attn", "transformer.h.0.mlp.c_proj", "transformer.h.1.attn.c_attn", "transformer.h.1.mlp.c_proj"],
            peft.TargetModules!.Order());
        Assert.Equal(2, peft.RankPattern["transformer.h.0.attn.c_attn"]);
        using (var model = Gpt2Checkpoint.Load(_cpu, baseDir, maxBatch: 1))
        using (var lora = new LoraModel(model))
        {
            PeftAdapterFiles.Load(lora, "b", dir, ModelLayout.Gpt2);
            Assert.Equal(expected, Logits(model));
        }
        // q, k and v are slices of the fused projection: GPT-2's PEFT layout has no module for them.
        using (var model = Gpt2Checkpoint.Load(_cpu, baseDir, maxBatch: 1))
        using (var lora = new LoraModel(model))
        {
            var sliced = new LoraConfig { TargetModules = ["q"], Defaults = new LoraOptions { Rank = 2 } };
            var adapter = lora.AddAdapter("q", sliced);
            var e = Assert.Throws<ArgumentException>(() => PeftAdapterFiles.Save(adapter, sliced, Path.Combine(_files.Root, "q"), "gpt2", ModelLayout.Gpt2));
            Assert.Contains("blocks.0.attn.q", e.Message);
        }
    }

    [Fact]
    public void EveryConfigFieldRoundTripsAndUnknownFieldsAreKept()
    {
        string dir = Path.Combine(_files.Root, "config");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, PeftAdapterFiles.ConfigFile), PeftConfig(
            ("init_lora_weights", "\"pissa_niter_7\""), ("use_rslora", "true"), ("exclude_modules", "[\"h.0.mlp.c_fc\"]"), ("custom_field", "{\"x\": [1, 2]}")));
        var peft = PeftAdapterFiles.ReadPeftConfig(dir);
        Assert.Equal(("LORA", "CAUSAL_LM", "gpt2", 4, 8f, 0.05f), (peft.PeftType, peft.TaskType, peft.BaseModelNameOrPath, peft.Rank, peft.Alpha, peft.Dropout));
        Assert.Equal(["c_attn", "c_proj", "c_fc"], peft.TargetModules);
        Assert.Equal(["h.0.mlp.c_fc"], peft.ExcludeModules);
        Assert.True(peft.UseRsLora && peft.FanInFanOut && !peft.UseDora);
        Assert.Equal(("none", "pissa_niter_7"), (peft.Bias, peft.InitLoraWeights));
        Assert.Equal((LoraInit.PissaRandomized, 7), (peft.Defaults.Init, peft.Defaults.PissaIterations));
        Assert.Equal(2, peft.RankPattern["h.1.mlp.c_fc"]);
        Assert.Equal(3f, peft.AlphaPattern["attn.c_proj"]);
        Assert.Contains(new KeyValuePair<string, string>("custom_field", "{\"x\": [1, 2]}"), peft.OtherFields);
        Assert.Contains(peft.OtherFields, f => f.Key == "megatron_core");
        PeftAdapterFiles.SaveConfig(peft, dir);
        var again = PeftAdapterFiles.ReadPeftConfig(dir);
        Assert.Equal(
            (peft.Rank, peft.Alpha, peft.Dropout, peft.UseRsLora, peft.FanInFanOut, peft.InitLoraWeights, peft.BaseModelNameOrPath, peft.TaskType),
            (again.Rank, again.Alpha, again.Dropout, again.UseRsLora, again.FanInFanOut, again.InitLoraWeights, again.BaseModelNameOrPath, again.TaskType));
        Assert.Equal(peft.TargetModules, again.TargetModules);
        Assert.Equal(peft.ExcludeModules, again.ExcludeModules);
        Assert.Equal(peft.RankPattern, again.RankPattern);
        Assert.Equal(peft.AlphaPattern, again.AlphaPattern);
        Assert.Equal(peft.OtherFields.Select(f => f.Key), again.OtherFields.Select(f => f.Key));
        // init_lora_weights true and false are JSON booleans, as PEFT needs them (the string "true" fails in PEFT).
        PeftAdapterFiles.SaveConfig(peft with { InitLoraWeights = "true" }, dir);
        Assert.Contains("\"init_lora_weights\": true", File.ReadAllText(Path.Combine(dir, PeftAdapterFiles.ConfigFile)));
    }

    [Fact]
    public void RegexTargetsAndExcludesSelectAsPeftDoes()
    {
        using var model = Gpt2Checkpoint.Load(_cpu, _files.Write(Gpt2Fixture.RandomTensors(seed: 62)), maxBatch: 1);
        var peft = new PeftAdapterConfig { TargetModulesPattern = @".*\.h\.1\.(attn\.c_attn|mlp\.c_\w+)" };
        var resolved = PeftTargets.Resolve(peft, model.LinearTargets, ModelLayout.Gpt2, "test");
        Assert.Equal(["blocks.1.attn.qkv", "blocks.1.mlp.fc", "blocks.1.mlp.proj"], resolved.TargetModules);
        // A list entry is a name suffix: c_proj is both attn.c_proj and mlp.c_proj; exclude_modules removes one of them.
        peft = new PeftAdapterConfig { TargetModules = ["c_proj"], ExcludeModules = ["h.0.mlp.c_proj"] };
        resolved = PeftTargets.Resolve(peft, model.LinearTargets, ModelLayout.Gpt2, "test");
        Assert.Equal(["blocks.0.attn.o", "blocks.1.attn.o", "blocks.1.mlp.proj"], resolved.TargetModules);
        peft = new PeftAdapterConfig { TargetModules = [LoraConfig.AllLinear] };
        Assert.Equal(8, PeftTargets.Resolve(peft, model.LinearTargets, ModelLayout.Gpt2, "test").TargetModules.Count);
        var e = Assert.Throws<InvalidDataException>(() =>
            PeftTargets.Resolve(new PeftAdapterConfig { TargetModules = ["q_proj"] }, model.LinearTargets, ModelLayout.Gpt2, "test"));
        Assert.Contains("'q_proj'", e.Message);
        Assert.Contains("transformer.h.0.attn.c_attn", e.Message);
    }

    public static TheoryData<string, string, string> Unsupported => new()
    {
        { "bias", "\"lora_only\"", "bias" },
        { "modules_to_save", "[\"lm_head\"]", "modules_to_save" },
        { "peft_type", "\"IA3\"", "peft_type" },
        { "layers_to_transform", "[0]", "layers_to_transform" },
        { "layers_pattern", "\"h\"", "layers_pattern" },
        { "lora_bias", "true", "lora_bias" },
        { "init_lora_weights", "\"loftq\"", "init_lora_weights" },
        { "r", "\"four\"", "r" },
        { "target_modules", "7", "target_modules" },
    };

    [Theory]
    [MemberData(nameof(Unsupported))]
    public void WhatCannotBeHonouredIsRefusedNamingTheField(string field, string raw, string mentioned)
    {
        string dir = Path.Combine(_files.Root, "bad");
        WriteAdapter(dir, PeftConfig((field, raw)));
        var e = Assert.Throws<InvalidDataException>(() => PeftAdapterFiles.ReadPeftConfig(dir));
        Assert.Contains(mentioned, e.Message);
        Assert.Contains(PeftAdapterFiles.ConfigFile, e.Message);
    }

    [Fact]
    public void KeysAndShapesWithNoPlaceAreRefusedNamingThem()
    {
        string baseDir = _files.Write(Gpt2Fixture.RandomTensors(seed: 63));
        using var model = Gpt2Checkpoint.Load(_cpu, baseDir, maxBatch: 1);
        using var lora = new LoraModel(model);
        string dir = Path.Combine(_files.Root, "extra");
        WriteAdapter(dir, PeftConfig(), extra: w => w.Add("base_model.model.transformer.h.0.attn.q_proj.lora_A.weight", new float[4 * C], 4, C));
        var e = Assert.Throws<InvalidDataException>(() => PeftAdapterFiles.Load(lora, "a", dir, ModelLayout.Gpt2));
        Assert.Contains("'base_model.model.transformer.h.0.attn.q_proj.lora_A.weight'", e.Message);
        Assert.Empty(lora.Adapters);

        // lora_A of c_attn stored [R, 3C] instead of [R, in = C].
        dir = Path.Combine(_files.Root, "shape");
        WriteAdapter(dir, PeftConfig(("target_modules", "[\"c_attn\"]"), ("rank_pattern", "{}"), ("alpha_pattern", "{}")));
        var writer = new SafetensorsWriter();
        for (int l = 0; l < Gpt2Fixture.Layers; l++)
        {
            writer.Add($"base_model.model.transformer.h.{l}.attn.c_attn.lora_A.weight", new float[4 * 3 * C], 4, 3 * C);
            writer.Add($"base_model.model.transformer.h.{l}.attn.c_attn.lora_B.weight", new float[3 * C * 4], 3 * C, 4);
        }
        writer.Save(Path.Combine(dir, PeftAdapterFiles.WeightsFile));
        e = Assert.Throws<InvalidDataException>(() => PeftAdapterFiles.Load(lora, "b", dir, ModelLayout.Gpt2));
        Assert.Contains("'base_model.model.transformer.h.0.attn.c_attn.lora_A.weight'", e.Message);
        Assert.Contains("[4, 24]", e.Message);
        Assert.Contains("[4, 8]", e.Message);

        // A target name that is no adaptable module of GPT-2.
        dir = Path.Combine(_files.Root, "unknown");
        WriteAdapter(dir, PeftConfig(("target_modules", "[\"c_attn\", \"wpe\"]")));
        e = Assert.Throws<InvalidDataException>(() => PeftAdapterFiles.Load(lora, "c", dir, ModelLayout.Gpt2));
        Assert.Contains("'wpe'", e.Message);

        // DoRA configured, but the file has no magnitude vectors.
        dir = Path.Combine(_files.Root, "missing");
        WriteAdapter(dir, PeftConfig(("use_dora", "true"), ("lora_dropout", "0")));
        e = Assert.Throws<InvalidDataException>(() => PeftAdapterFiles.Load(lora, "d", dir, ModelLayout.Gpt2));
        Assert.Contains("missing tensor 'base_model.model.transformer.h.0.attn.c_attn.lora_magnitude_vector'", e.Message);
        Assert.Contains("[24]", e.Message);
        Assert.Empty(lora.Adapters);
    }
}

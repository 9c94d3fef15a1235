using System.Text.Json;
using LoraRuntime.Cpu;
using LoraRuntime.IO;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Llama;

/// <summary>
/// Tiny random checkpoints written the way Hugging Face stores Llama, Mistral and Qwen2 models (config.json with
/// transformers v4 or v5 rope keys, one file or shards with an index, F32, F16 or BF16) load into models whose logits
/// match the float64 reference run on the stored tensors; what cannot be loaded exactly is refused naming the key.
/// </summary>
public sealed class LlamaCheckpointTests : IDisposable
{
    private readonly CpuBackend _backend = new();
    private readonly string _root = Path.Combine(Path.GetTempPath(), "lora-llama-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    /// <summary>A checkpoint: its shape, config.json's extra fields, how it is stored.</summary>
    private sealed record Case(string ModelType, LlamaShape Shape, string Rope, int Shards, SafetensorsDType DType, string Extra = "");

    private static readonly Dictionary<string, Case> Cases = new()
    {
        ["llama3-gqa-untied"] = new("llama", new(19, 32, 40, 2, 4, 2, 8, 1e-5, false, false, false, false, 500000, RopeType: "llama3", Factor: 8, OriginalMax: 8),
            "\"rope_theta\": 500000, \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8}",
            1, SafetensorsDType.F32),
        ["qwen2-sharded-bf16"] = new("qwen2", new(23, 24, 36, 2, 4, 1, 6, 1e-6, true, false, false, true, 1000000),
            "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 1000000.0}, \"use_sliding_window\": false, \"sliding_window\": 4",
            3, SafetensorsDType.BF16),
        ["mistral-f16-head-dim"] = new("mistral", new(17, 24, 32, 1, 3, 1, 16, 1e-5, false, false, false, false, 10000),
            "\"rope_theta\": 10000.0, \"sliding_window\": null, \"head_dim\": 16", 1, SafetensorsDType.F16),
        ["qwen3-qk-norm"] = new("qwen3", new(17, 24, 32, 2, 4, 2, 16, 1e-6, false, false, false, true, 1000000, QkNorm: true),
            "\"rope_theta\": 1000000, \"head_dim\": 16, \"attention_bias\": false", 1, SafetensorsDType.BF16),
        ["llama-biases-yarn"] = new("llama", new(13, 16, 24, 2, 2, 2, 8, 1e-5, true, true, true, true, 10000, RopeType: "yarn", Factor: 4, OriginalMax: 4),
            "\"rope_theta\": 10000, \"attention_bias\": true, \"mlp_bias\": true, \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4, \"original_max_position_embeddings\": 4}",
            2, SafetensorsDType.F32),
    };

    public static TheoryData<string> Names => new(Cases.Keys);

    [Theory]
    [MemberData(nameof(Names))]
    public void A_checkpoint_loads_and_its_logits_match_the_reference(string name)
    {
        var c = Cases[name];
        string dir = Write(name, c, RandomTensors(c.Shape, seed: name.Length));
        using var model = LlamaCheckpoint.Load(_backend, dir, maxBatch: 1, context: 10);
        Assert.Equal(10, model.Config.BlockSize);
        int[] tokens = Enumerable.Range(0, 10).Select(i => (i * 7 + 1) % c.Shape.Vocabulary).ToArray();
        using var ids = _backend.Allocate(DType.I32, new Shape(1, tokens.Length));
        _backend.Upload(ids, tokens);
        model.Forward(ids);
        var expected = new LlamaReference(c.Shape, ReadBack(dir)).Logits(tokens);
        double error = Reference.RelativeError(model.Logits.ToArray(), expected);
        Assert.True(error <= 1e-5, $"{name}: ‖Δ‖/‖ref‖ = {error:E2}");
    }

    public static TheoryData<string, string, string> BadConfigs => new()
    {
        { "\"hidden_act\": \"gelu\"", "", "hidden_act" },
        { "\"sliding_window\": 4", "", "sliding_window" },
        { "\"rope_scaling\": {\"rope_type\": \"longrope\", \"factor\": 2}", "", "rope_type" },
        { "\"rope_scaling\": {\"rope_type\": \"yarn\"}", "", "factor" },
        { "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 2, \"mscale\": 0.7}", "", "mscale" },
        { "\"head_dim\": 0", "", "HeadSize" },
        { "", "gemma", "model_type" },
    };

    [Theory]
    [MemberData(nameof(BadConfigs))]
    public void Unsupported_configurations_are_refused_naming_the_key(string extra, string modelType, string expected)
    {
        var c = Cases["mistral-f16-head-dim"] with { Extra = extra };
        string dir = Write("bad", c with { ModelType = modelType.Length > 0 ? modelType : c.ModelType, Rope = extra.Contains("rope_scaling") ? "\"rope_theta\": 10000" : c.Rope },
            RandomTensors(c.Shape, 1));
        var e = Assert.Throws<InvalidDataException>(() => LlamaCheckpoint.Load(_backend, dir, 1, context: 8));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Missing_extra_misshapen_and_escaping_tensors_are_refused_by_name()
    {
        var c = Cases["llama3-gqa-untied"];
        var tensors = RandomTensors(c.Shape, 3);
        string Fails(Dictionary<string, (float[] Values, int[] Dims)> t, int shards = 1, Action<string>? edit = null)
        {
            string dir = Write("broken-" + Guid.NewGuid().ToString("N")[..6], c with { Shards = shards }, t);
            edit?.Invoke(dir);
            return Assert.ThrowsAny<Exception>(() => LlamaCheckpoint.Load(_backend, dir, 1, context: 8)).Message;
        }
        Assert.Contains("model.layers.1.self_attn.k_proj.weight", Fails(new(tensors.Where(kv => kv.Key != "model.layers.1.self_attn.k_proj.weight"))));
        Assert.Contains("model.extra.weight", Fails(new(tensors) { ["model.extra.weight"] = ([1, 2], [2]) }));
        var wrong = new Dictionary<string, (float[], int[])>(tensors) { ["model.norm.weight"] = (new float[31], [31]) };
        Assert.Contains("model.norm.weight", Fails(wrong));
        Assert.Contains("weight_map", Fails(tensors, shards: 2, edit: dir =>
        {
            string index = Path.Combine(dir, LlamaCheckpoint.IndexFile);
            File.WriteAllText(index, File.ReadAllText(index).Replace("\"model-00001-of-00002.safetensors\"", "\"../model-00001-of-00002.safetensors\""));
        }));
        Assert.Contains("lm_head.weight", Fails(new(tensors.Where(kv => kv.Key != "lm_head.weight"))));
    }

    [Fact]
    public void A_peft_adapter_in_llama_names_loads_merges_like_the_reference_and_saves_back_in_them()
    {
        var c = Cases["llama3-gqa-untied"];
        var s = c.Shape;
        string dir = Write("peft-base", c, RandomTensors(s, 9));
        Assert.Equal(ModelLayout.Llama, ModelDirectory.DetectLayout(dir));
        var (model, tokenizer, layout) = ModelDirectory.Load(_backend, dir, maxBatch: 1);
        using var _ = model;
        Assert.Null(tokenizer);
        Assert.Equal(ModelLayout.Llama, layout);
        // An adapter as PEFT writes it for LlamaForCausalLM: q_proj, v_proj and down_proj, rank 4 (2 on layer 1's down_proj), α 8.
        string adapterDir = Path.Combine(_root, "peft-adapter");
        Directory.CreateDirectory(adapterDir);
        File.WriteAllText(Path.Combine(adapterDir, "adapter_config.json"), """
            {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "llama", "r": 4, "lora_alpha": 8, "lora_dropout": 0.0,
             "target_modules": ["q_proj", "v_proj", "down_proj"], "rank_pattern": {"model.layers.1.mlp.down_proj": 2}, "alpha_pattern": {},
             "fan_in_fan_out": false, "bias": "none", "use_rslora": false, "use_dora": false, "init_lora_weights": true, "modules_to_save": null}
            """);
        var writer = new SafetensorsWriter();
        var weights = ReadBack(dir);
        int q = s.Heads * s.HeadDim, kv = s.KvHeads * s.HeadDim, seed = 70;
        for (int l = 0; l < s.Layers; l++)
            foreach (var (module, fanIn, fanOut) in new[] { ("self_attn.q_proj", s.Hidden, q), ("self_attn.v_proj", s.Hidden, kv), ("mlp.down_proj", s.Intermediate, s.Hidden) })
            {
                string name = $"model.layers.{l}.{module}";
                int rank = name == "model.layers.1.mlp.down_proj" ? 2 : 4;
                var a = Reference.Random(rank * fanIn, seed++);
                var b = Reference.Random(fanOut * rank, seed++).Select(v => 0.3f * v).ToArray();
                writer.Add($"base_model.model.{name}.lora_A.weight", a, rank, fanIn);
                writer.Add($"base_model.model.{name}.lora_B.weight", b, fanOut, rank);
                // The reference merges W += (α/R)·B·A in float64.
                var w = weights[name + ".weight"];
                for (int o = 0; o < fanOut; o++)
                    for (int i = 0; i < fanIn; i++)
                    {
                        double delta = 0;
                        for (int r = 0; r < rank; r++) delta += (double)b[o * rank + r] * a[r * fanIn + i];
                        w[o * fanIn + i] += 8.0 / rank * delta;
                    }
            }
        writer.Save(Path.Combine(adapterDir, "adapter_model.safetensors"));
        using var lora = new LoraModel(model);
        var adapter = PeftAdapterFiles.Load(lora, "peft", adapterDir, layout);
        adapter.Training = false;
        Assert.Equal(3 * s.Layers, adapter.Modules.Count);
        int[] tokens = Enumerable.Range(0, 7).Select(i => (i * 3 + 2) % s.Vocabulary).ToArray();
        using var ids = _backend.Allocate(DType.I32, new Shape(1, tokens.Length));
        _backend.Upload(ids, tokens);
        model.Forward(ids);
        double error = Reference.RelativeError(model.Logits.ToArray(), new LlamaReference(s, weights).Logits(tokens));
        Assert.True(error <= 1e-5, $"with the adapter: ‖Δ‖/‖ref‖ = {error:E2}");

        // Saved in the Llama layout: PEFT's module names and keys; "all-linear" is q, k, v, o, gate, up, down there.
        string saved = Path.Combine(_root, "saved-adapter");
        var all = new LoraConfig { TargetModules = [LoraConfig.AllLinear], Defaults = new LoraOptions { Rank = 2, Alpha = 4, Init = LoraInit.Random, Seed = 1 } };
        var fresh = lora.AddAdapter("all", all);
        PeftAdapterFiles.Save(fresh, all, saved, "llama", layout);
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(saved, "adapter_config.json")));
        var targets = config.RootElement.GetProperty("target_modules").EnumerateArray().Select(e => e.GetString()).ToHashSet();
        foreach (string module in new[] { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj" })
            Assert.Contains($"model.layers.1.{module}", targets);
        Assert.Equal(7 * s.Layers, targets.Count);
        Assert.False(config.RootElement.GetProperty("fan_in_fan_out").GetBoolean());
        using var reader = SafetensorsReader.Open(Path.Combine(saved, "adapter_model.safetensors"));
        Assert.True(reader.TryGetEntry("base_model.model.model.layers.0.mlp.gate_proj.lora_B.weight", out var gateB));
        Assert.Equal([(long)s.Intermediate, 2], gateB.Shape);
        // And a fused projection cannot be saved under Llama's names.
        var fused = new LoraConfig { TargetModules = ["qkv"], Defaults = new LoraOptions { Rank = 2, Alpha = 4 } };
        var e = Assert.Throws<ArgumentException>(() => PeftAdapterFiles.Save(lora.AddAdapter("fused", fused), fused, Path.Combine(_root, "fused"), "llama", layout));
        Assert.Contains("target q, k, v", e.Message);
    }

    [Fact]
    public void With_its_tokenizer_json_a_checkpoint_generates_fine_tunes_and_serves_text()
    {
        // A tiny Llama with GPT-2's byte-level vocabulary, and GPT-2's tokenizer.json beside it.
        var shape = new LlamaShape(50257, 16, 24, 1, 2, 1, 8, 1e-5, false, false, false, true, 10000);
        string dir = Write("with-tokenizer", new Case("llama", shape, "\"rope_theta\": 10000", 1, SafetensorsDType.BF16), RandomTensors(shape, 4));
        File.Copy(Text.HuggingFaceTokenizerTests.Gpt2File.Value, Path.Combine(dir, "tokenizer.json"));
        var (model, tokenizer, _) = ModelDirectory.Load(_backend, dir, maxBatch: 1);
        model.Dispose();
        Assert.Equal([15496, 995], Assert.IsType<LoraRuntime.Layers.Text.HuggingFaceTokenizer>(tokenizer).Encode("Hello world"));
        var output = new StringWriter();
        var error = new StringWriter();
        var terminal = LoraRuntime.Cli.Terminal.ForWriters(output, error);
        Assert.Equal(0, LoraRuntime.Cli.LoraApp.Run(["generate", "--base", dir, "--prompt", "Hello world", "--tokens", "4", "--temperature", "0"], terminal));
        Assert.StartsWith("Hello world", output.ToString());
        string corpus = Path.Combine(_root, "corpus.txt");
        File.WriteAllText(corpus, string.Concat(Enumerable.Repeat("The quick brown fox jumps over the lazy dog. ", 80)));
        string adapter = Path.Combine(_root, "llama-text-adapter");
        Assert.True(LoraRuntime.Cli.LoraApp.Run(["finetune", "--base", dir, "--data", corpus, "--out", adapter, "--iters", "2", "--batch", "1",
            "--eval-every", "2", "--eval-iters", "1", "--rank", "2", "--targets", "q,v,down"], terminal) == 0, error.ToString());
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(adapter, "adapter_config.json")));
        Assert.Contains("model.layers.0.self_attn.q_proj", config.RootElement.GetProperty("target_modules").EnumerateArray().Select(e => e.GetString()));
        // Merged into the checkpoint, in its own layout: the merged model's logits are the base's with the adapter.
        string merged = Path.Combine(_root, "merged");
        // At 200 times its scale, so that two steps' worth of training moves the logits well past the tolerance.
        Assert.True(LoraRuntime.Cli.LoraApp.Run(["merge", "--base", dir, "--adapter", adapter + ":200", "--out", merged], terminal) == 0, error.ToString());
        Assert.Equal(ModelLayout.Llama, ModelDirectory.DetectLayout(merged));
        Assert.True(File.Exists(Path.Combine(merged, "tokenizer.json")));
        int[] probe = [15496, 995, 11, 257];
        float[] Logits(GptModel m)
        {
            using var ids = _backend.Allocate(DType.I32, new Shape(1, probe.Length));
            _backend.Upload(ids, probe);
            m.Forward(ids);
            return m.Logits.ToArray();
        }
        float[] withAdapter, bare;
        var (unmerged, _, _) = ModelDirectory.Load(_backend, dir, maxBatch: 1);
        using (unmerged)
        using (var lora = new LoraModel(unmerged))
        {
            bare = Logits(unmerged);
            var loaded = PeftAdapterFiles.Load(lora, "a", adapter, ModelLayout.Llama);
            loaded.Training = false;
            foreach (var w in loaded.Modules) _backend.Scale(w.B.Value, w.B.Value, 200f);
            withAdapter = Logits(unmerged);
        }
        var (mergedModel, _, _) = ModelDirectory.Load(_backend, merged, maxBatch: 1);
        using (mergedModel)
        {
            var mergedLogits = Logits(mergedModel);
            Assert.True(Reference.RelativeError(mergedLogits, Reference.ToDouble(bare)) > 1e-4, "the merge changed the model");
            double gap = Reference.RelativeError(mergedLogits, Reference.ToDouble(withAdapter));
            Assert.True(gap <= 1e-5, $"merged vs adapter: {gap:E2}");
        }
        // Extracted back out of the merged checkpoint (rank 2 on q, v, down: the delta's own), in Llama's names.
        string extracted = Path.Combine(_root, "extracted");
        Assert.True(LoraRuntime.Cli.LoraApp.Run(["extract", "--base", dir, "--tuned", merged, "--rank", "2", "--targets", "q,v,down", "--out", extracted],
            terminal) == 0, error.ToString());
        using (var extractedConfig = JsonDocument.Parse(File.ReadAllText(Path.Combine(extracted, "adapter_config.json"))))
            Assert.Contains("model.layers.0.mlp.down_proj", extractedConfig.RootElement.GetProperty("target_modules").EnumerateArray().Select(e => e.GetString()));
        var (again, _, _) = ModelDirectory.Load(_backend, dir, maxBatch: 1);
        using (again)
        using (var lora = new LoraModel(again))
        {
            PeftAdapterFiles.Load(lora, "x", extracted, ModelLayout.Llama).Training = false;
            double gap = Reference.RelativeError(Logits(again), Reference.ToDouble(withAdapter));
            Assert.True(gap <= 1e-4, $"extracted adapter vs the original: {gap:E2}");
        }
        // Compressed (every singular value kept), it is a model directory of ours that keeps the tokenizer and takes the
        // checkpoint's adapters by their Llama names: with the adapter it gives the adapted logits, and it merges into ours.
        string compressed = Path.Combine(_root, "compressed");
        Assert.True(LoraRuntime.Cli.LoraApp.Run(["compress", "--model", dir, "--energy", "1", "--targets", "qkv,down", "--data", corpus, "--eval-iters", "1",
            "--batch", "1", "--out", compressed], terminal) == 0, error.ToString());
        Assert.Equal(ModelLayout.LoraRuntime, ModelDirectory.DetectLayout(compressed));
        var (small, smallTokenizer, smallNames) = ModelDirectory.Load(_backend, compressed, maxBatch: 1);
        using (small)
        using (var lora = new LoraModel(small))
        {
            Assert.Equal(ModelLayout.Llama, smallNames);
            Assert.True(small.Config.FactoredRanks.Count > 0);
            Assert.Equal([15496, 995], Assert.IsType<LoraRuntime.Layers.Text.HuggingFaceTokenizer>(smallTokenizer).Encode("Hello world"));
            double plain = Reference.RelativeError(Logits(small), Reference.ToDouble(bare));
            Assert.True(plain <= 1e-4, $"compressed at full energy vs the checkpoint: {plain:E2}");
            var loaded = PeftAdapterFiles.Load(lora, "a", adapter, smallNames);
            loaded.Training = false;
            foreach (var w in loaded.Modules) _backend.Scale(w.B.Value, w.B.Value, 200f);
            double adapted = Reference.RelativeError(Logits(small), Reference.ToDouble(withAdapter));
            Assert.True(adapted <= 1e-4, $"compressed with the adapter vs the checkpoint with it: {adapted:E2}");
        }
        Assert.True(LoraRuntime.Cli.LoraApp.Run(["generate", "--base", compressed, "--adapter", adapter, "--prompt", "Hello world", "--tokens", "3"], terminal) == 0,
            error.ToString());
        // A factored layer has no dense weight to merge into: refused, naming it; a layer left dense takes the merge.
        Assert.Equal(2, LoraRuntime.Cli.LoraApp.Run(["merge", "--base", compressed, "--adapter", adapter, "--out", Path.Combine(_root, "refused")], terminal));
        Assert.Contains("blocks.0.attn.qkv, which is factored", error.ToString());
        string partly = Path.Combine(_root, "compressed-gate-up");
        Assert.True(LoraRuntime.Cli.LoraApp.Run(["compress", "--model", dir, "--energy", "1", "--targets", "gate_up", "--out", partly], terminal) == 0, error.ToString());
        string compressedMerged = Path.Combine(_root, "compressed-merged");
        Assert.True(LoraRuntime.Cli.LoraApp.Run(["merge", "--base", partly, "--adapter", adapter + ":200", "--out", compressedMerged], terminal) == 0, error.ToString());
        var (smallMerged, mergedTokenizer, mergedNames) = ModelDirectory.Load(_backend, compressedMerged, maxBatch: 1);
        using (smallMerged)
        {
            Assert.Equal(ModelLayout.Llama, mergedNames);
            Assert.NotNull(mergedTokenizer);
            double gap = Reference.RelativeError(Logits(smallMerged), Reference.ToDouble(withAdapter));
            Assert.True(gap <= 1e-4, $"compressed, merged vs the checkpoint with the adapter: {gap:E2}");
        }
        // Without a readable tokenizer.json the text commands say why and stop.
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), "{\"model\": {\"type\": \"Unigram\"}}");
        Assert.Equal(2, LoraRuntime.Cli.LoraApp.Run(["generate", "--base", dir, "--prompt", "Hi", "--tokens", "2"], terminal));
        Assert.Contains("model.type", error.ToString());
    }

    [Fact]
    public async Task Generation_ends_at_the_checkpoints_end_of_sequence_in_the_engine_the_cli_and_the_server()
    {
        var ct = TestContext.Current.CancellationToken;
        var shape = new LlamaShape(50257, 16, 24, 1, 2, 1, 8, 1e-5, false, false, false, true, 10000);
        string dir = Write("eos", new Case("llama", shape, "\"rope_theta\": 10000", 1, SafetensorsDType.F32), RandomTensors(shape, 11));
        File.Copy(Text.HuggingFaceTokenizerTests.Gpt2File.Value, Path.Combine(dir, "tokenizer.json"));
        const string prompt = "Hello world";
        var greedy = new LoraRuntime.Hosting.GenerationOptions { MaxTokens = 4, Temperature = 0 };
        int[] free;
        using (var engine = LoraRuntime.Hosting.LoraEngine.Load(dir))
            free = (await engine.GenerateAsync(prompt, greedy, ct)).Tokens;
        Assert.Equal(4, free.Length);
        // The end of sequence: the first generated token not drawn before it (the first one when all are the same).
        int k = Enumerable.Range(1, 3).FirstOrDefault(i => !free[..i].Contains(free[i]));
        int[] expected = free[..k];
        File.WriteAllText(Path.Combine(dir, "generation_config.json"), $"{{\"eos_token_id\": [{free[k]}, 50256]}}");
        var tokenizer = Assert.IsType<LoraRuntime.Layers.Text.HuggingFaceTokenizer>(ModelDirectory.TryLoadTokenizer(dir, out _));
        using (var engine = LoraRuntime.Hosting.LoraEngine.Load(dir))
        {
            var ended = await engine.GenerateAsync(prompt, greedy, ct);
            Assert.Equal(expected, ended.Tokens);
            Assert.Equal("stop", ended.FinishReason);
            Assert.Equal(tokenizer.Decode(expected), ended.Text);
            var past = await engine.GenerateAsync(prompt, greedy with { IgnoreEndOfSequence = true }, ct);
            Assert.Equal(free, past.Tokens);
            Assert.Equal("length", past.FinishReason);
        }
        var output = new StringWriter();
        var error = new StringWriter();
        Assert.True(LoraRuntime.Cli.LoraApp.Run(["generate", "--base", dir, "--prompt", prompt, "--tokens", "4", "--temperature", "0"],
            LoraRuntime.Cli.Terminal.ForWriters(output, error)) == 0, error.ToString());
        Assert.Equal(prompt + tokenizer.Decode(expected), output.ToString().TrimEnd('\r', '\n'));

        // Served over HTTP with its text tokenizer: the same answer, and ignore_eos generates past it.
        await using var server = await Serving.TestServer.StartAsync(
            LoraRuntime.Cli.Serve.ServingHost.Open(_backend, dir, [], new LoraRuntime.Cli.Serve.ServeOptions(Slots: 2, MaxStepTokens: 16, MaxRank: 4)));
        var http = server.Http;
        async Task<JsonElement> Complete(string extra)
        {
            using var content = new StringContent($$"""{"model": "base", "prompt": "{{prompt}}", "max_tokens": 4, "temperature": 0{{extra}}}""",
                System.Text.Encoding.UTF8, "application/json");
            using var response = await http.PostAsync("/v1/completions", content, ct);
            string body = await response.Content.ReadAsStringAsync(ct);
            Assert.True(response.IsSuccessStatusCode, body);
            return JsonDocument.Parse(body).RootElement.Clone();
        }
        var answer = await Complete("");
        Assert.Equal(tokenizer.Decode(expected), answer.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.Equal("stop", answer.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal(tokenizer.EncodePrompt(prompt).Length, answer.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        var longer = await Complete(", \"ignore_eos\": true");
        Assert.Equal(tokenizer.Decode(free), longer.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.Equal("length", longer.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    /// <summary>Every tensor of <paramref name="shape"/> by Hugging Face name, random (norm weights about 1).</summary>
    private static Dictionary<string, (float[] Values, int[] Dims)> RandomTensors(LlamaShape shape, int seed)
    {
        var rng = new Random(seed);
        var t = new Dictionary<string, (float[], int[])>(StringComparer.Ordinal);
        void Add(string name, float offset, params int[] dims) =>
            t[name] = (Enumerable.Range(0, dims.Aggregate(1, (a, b) => a * b)).Select(_ => offset + 0.4f * (2 * rng.NextSingle() - 1)).ToArray(), dims);
        int c = shape.Hidden, q = shape.Heads * shape.HeadDim, kv = shape.KvHeads * shape.HeadDim, inter = shape.Intermediate;
        Add("model.embed_tokens.weight", 0, shape.Vocabulary, c);
        for (int l = 0; l < shape.Layers; l++)
        {
            string p = $"model.layers.{l}.";
            Add(p + "input_layernorm.weight", 1, c);
            Add(p + "post_attention_layernorm.weight", 1, c);
            foreach (var (proj, rows) in new[] { ("q_proj", q), ("k_proj", kv), ("v_proj", kv) })
            {
                Add(p + "self_attn." + proj + ".weight", 0, rows, c);
                if (shape.QkvBias) Add(p + "self_attn." + proj + ".bias", 0, rows);
            }
            Add(p + "self_attn.o_proj.weight", 0, c, q);
            if (shape.QkNorm)
            {
                Add(p + "self_attn.q_norm.weight", 1, shape.HeadDim);
                Add(p + "self_attn.k_norm.weight", 1, shape.HeadDim);
            }
            if (shape.OutputBias) Add(p + "self_attn.o_proj.bias", 0, c);
            Add(p + "mlp.gate_proj.weight", 0, inter, c);
            Add(p + "mlp.up_proj.weight", 0, inter, c);
            Add(p + "mlp.down_proj.weight", 0, c, inter);
            if (shape.MlpBias)
            {
                Add(p + "mlp.gate_proj.bias", 0, inter);
                Add(p + "mlp.up_proj.bias", 0, inter);
                Add(p + "mlp.down_proj.bias", 0, c);
            }
            t[p + "self_attn.rotary_emb.inv_freq"] = (new float[shape.HeadDim / 2], [shape.HeadDim / 2]); // old checkpoints' buffer, skipped
        }
        Add("model.norm.weight", 1, c);
        if (!shape.Tied) Add("lm_head.weight", 0, shape.Vocabulary, c);
        return t;
    }

    /// <summary>Writes config.json and the tensors (split over the case's shards, with an index) into a new folder.</summary>
    private string Write(string name, Case c, Dictionary<string, (float[] Values, int[] Dims)> tensors)
    {
        string dir = Path.Combine(_root, name + "-" + Guid.NewGuid().ToString("N")[..6]);
        Directory.CreateDirectory(dir);
        var s = c.Shape;
        string extra = string.Join(", ", new[] { c.Rope, c.Extra }.Where(x => x.Length > 0));
        File.WriteAllText(Path.Combine(dir, "config.json"), $$"""
            {"model_type": "{{c.ModelType}}", "architectures": ["X"], "vocab_size": {{s.Vocabulary}}, "hidden_size": {{s.Hidden}},
             "intermediate_size": {{s.Intermediate}}, "num_hidden_layers": {{s.Layers}}, "num_attention_heads": {{s.Heads}},
             "num_key_value_heads": {{s.KvHeads}}, {{(s.HeadDim * s.Heads != s.Hidden && !extra.Contains("head_dim") ? $"\"head_dim\": {s.HeadDim}," : "")}}
             "rms_norm_eps": {{s.RmsEps.ToString(System.Globalization.CultureInfo.InvariantCulture)}}, "max_position_embeddings": 32, "hidden_act": "silu",
             "tie_word_embeddings": {{(s.Tied ? "true" : "false")}}, "torch_dtype": "bfloat16"{{(extra.Length > 0 ? ", " + extra : "")}}}
            """);
        var names = tensors.Keys.ToArray();
        if (c.Shards == 1)
        {
            var writer = new SafetensorsWriter(c.DType);
            foreach (var n in names) writer.Add(n, tensors[n].Values, tensors[n].Dims);
            writer.Save(Path.Combine(dir, "model.safetensors"));
            return dir;
        }
        var map = new Dictionary<string, string>();
        for (int shard = 0; shard < c.Shards; shard++)
        {
            string file = $"model-{shard + 1:00000}-of-{c.Shards:00000}.safetensors";
            var writer = new SafetensorsWriter(c.DType);
            for (int i = shard; i < names.Length; i += c.Shards)
            {
                writer.Add(names[i], tensors[names[i]].Values, tensors[names[i]].Dims);
                map[names[i]] = file;
            }
            writer.Save(Path.Combine(dir, file));
        }
        File.WriteAllText(Path.Combine(dir, LlamaCheckpoint.IndexFile), JsonSerializer.Serialize(new { metadata = new { total_size = 0 }, weight_map = map }));
        return dir;
    }

    /// <summary>Every tensor of the checkpoint as stored (after the dtype's rounding), widened to float64.</summary>
    private static Dictionary<string, double[]> ReadBack(string dir)
    {
        var result = new Dictionary<string, double[]>(StringComparer.Ordinal);
        foreach (string file in Directory.GetFiles(dir, "*.safetensors"))
        {
            using var reader = SafetensorsReader.Open(file);
            foreach (var entry in reader.Entries)
            {
                var values = new float[entry.ElementCount];
                reader.ReadFloat32(entry.Name, values);
                result[entry.Name] = Reference.ToDouble(values);
            }
        }
        return result;
    }
}

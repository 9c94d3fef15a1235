using LoraRuntime.Cpu;
using LoraRuntime.IO;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Layers.Serving;
using LoraRuntime.Quantization;
using LoraRuntime.Tests.Llama;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Quantization;

/// <summary>
/// A Llama-family checkpoint loaded with its weights kept as stored (BF16) or quantized (Q8_0, Q4_0, NF4): its logits
/// against the float64 reference of the architecture run on the dequantized weights (what the model really holds),
/// the serving path against the training-mode forward pass, the memory it takes, and a QLoRA step: gradients of an
/// adapter over a quantized base by finite differences, allocation-free.
/// </summary>
public sealed class QuantizedModelTests : IDisposable
{
    private static readonly LlamaShape Shape = new(40, 64, 128, 2, 4, 2, 16, 1e-5, false, false, false, true, 10000);
    private static readonly string[] StoredSuffixes =
        ["embed_tokens.weight", "q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight", "gate_proj.weight", "up_proj.weight", "down_proj.weight", "lm_head.weight"];

    private readonly CpuBackend _backend = new();
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "lora-quant-" + Guid.NewGuid().ToString("N"));

    public QuantizedModelTests()
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllText(Path.Combine(_dir, "config.json"), $$"""
            {"model_type": "llama", "vocab_size": {{Shape.Vocabulary}}, "hidden_size": {{Shape.Hidden}}, "intermediate_size": {{Shape.Intermediate}},
             "num_hidden_layers": {{Shape.Layers}}, "num_attention_heads": {{Shape.Heads}}, "num_key_value_heads": {{Shape.KvHeads}},
             "rms_norm_eps": 1e-5, "max_position_embeddings": 32, "hidden_act": "silu", "tie_word_embeddings": true, "rope_theta": 10000}
            """);
        var writer = new SafetensorsWriter(SafetensorsDType.BF16);
        foreach (var (name, (values, dims)) in Tensors()) writer.Add(name, values, dims);
        writer.Save(Path.Combine(_dir, "model.safetensors"));
    }

    public void Dispose()
    {
        _backend.Dispose();
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    public static TheoryData<WeightFormat, double> Formats => new()
    {
        { WeightFormat.BF16, 1e-5 }, { WeightFormat.F16, 1e-5 }, { WeightFormat.Q8_0, 1e-5 }, { WeightFormat.Q4_0, 1e-5 }, { WeightFormat.NF4, 1e-5 },
    };

    [Theory]
    [MemberData(nameof(Formats))]
    public void Logits_match_the_float64_reference_of_the_weights_the_model_holds(WeightFormat format, double tolerance)
    {
        using var model = LlamaCheckpoint.Load(_backend, _dir, maxBatch: 1, context: 12, storage: WeightStorage.Quantized(format));
        Assert.Equal(4 * Shape.Layers + 1, model.Parameters.Stored.Count); // qkv, o, gate_up, down per layer and the table
        Assert.All(model.Parameters.Stored.Values, m => Assert.Equal(format, m.Format));
        int[] tokens = Enumerable.Range(0, 12).Select(i => (i * 7 + 3) % Shape.Vocabulary).ToArray();
        using var ids = _backend.Allocate(DType.I32, new Shape(1, tokens.Length));
        ids.CopyFrom(tokens);
        model.Forward(ids);
        var logits = model.Logits.ToArray();
        var held = new LlamaReference(Shape, Dequantized(format)).Logits(tokens);
        double error = Reference.RelativeError(logits, held);
        Assert.True(error <= tolerance, $"{format}: ‖Δ‖/‖ref‖ against the held weights = {error:E2}");
        // And how far quantization moved the model from its float weights.
        var original = new LlamaReference(Shape, Dequantized(WeightFormat.F32)).Logits(tokens);
        double drift = Reference.RelativeError(logits, original);
        // Random weights without structure are the hard case: measured 2.8% (Q8_0), 51% (Q4_0) and 54% (NF4) here.
        double allowed = format switch { WeightFormat.BF16 or WeightFormat.F16 => 1e-5, WeightFormat.Q8_0 => 0.05, _ => 0.7 };
        Assert.True(drift <= allowed, $"{format}: ‖Δ‖/‖ref‖ against the float checkpoint = {drift:E2} (allowed {allowed})");
    }

    [Theory]
    [InlineData(WeightFormat.BF16)]
    [InlineData(WeightFormat.Q8_0)]
    [InlineData(WeightFormat.Q4_0)]
    [InlineData(WeightFormat.NF4)]
    public void The_serving_path_matches_the_forward_pass_and_allocates_nothing(WeightFormat format)
    {
        using var model = LlamaCheckpoint.Load(_backend, _dir, maxBatch: 1, context: 12, storage: WeightStorage.Quantized(format));
        ServingMatchesTheForwardPassAllocationFree(model, format);
    }

    [Theory]
    [InlineData(WeightFormat.NF4)]
    [InlineData(WeightFormat.Q8_0)]
    public void An_adapter_applied_unmerged_over_a_stored_base_serves_its_forward_pass_and_allocates_nothing(WeightFormat format)
    {
        using var model = LlamaCheckpoint.Load(_backend, _dir, maxBatch: 1, context: 12, storage: WeightStorage.Quantized(format));
        using var lora = new LoraModel(model);
        lora.AddAdapter("a", new LoraConfig { TargetModules = ["q", "v", "down"], Defaults = new LoraOptions { Rank = 2, Alpha = 4, Init = LoraInit.Random, Seed = 3 } });
        lora.SetActiveAdapter("a");
        ServingMatchesTheForwardPassAllocationFree(model, format);
    }

    /// <summary>
    /// A prompt of 5 rows, then one token at a time, through the serving path, against the training-mode forward pass of
    /// the same tokens; then three warm steps that allocate nothing.
    /// </summary>
    private void ServingMatchesTheForwardPassAllocationFree(GptModel model, WeightFormat format)
    {
        int[] tokens = [3, 9, 14, 1, 22, 5, 30, 7];
        using var ids = _backend.Allocate(DType.I32, new Shape(1, tokens.Length));
        ids.CopyFrom(tokens);
        model.Forward(ids);
        var full = model.Logits.ToArray();
        int v = Shape.Vocabulary;
        using var decoder = new KvCacheDecoder(new ServingLayout(model), slots: 1, maxStepTokens: 12);
        var logits = new float[v];
        decoder.Forward([new DecodeRow(0, 0, 5, null)], tokens.AsSpan(0, 5), logits);
        // Serving multiplies Q8_0/Q4_0 weights by activations rounded to Q8_0 and BF16 weights by activations rounded
        // to bfloat16 (llama.cpp's inference products); the training forward pass by the activations as they are: close,
        // not equal (measured 2.1–3.5% for Q8_0/Q4_0 and 0.56–1.8% for BF16 here, random weights). The products themselves
        // are held to float32 rounding by the conformance suite.
        double limit = format is WeightFormat.Q8_0 or WeightFormat.Q4_0 or WeightFormat.BF16 ? 6e-2 : 1e-5;
        double prefill = Reference.RelativeError(logits, Reference.ToDouble(full.AsSpan(4 * v, v)));
        Assert.True(prefill <= limit, $"{format} prefill: ‖Δ‖/‖ref‖ = {prefill:E2}");
        // The prefill again (the same cache contents): warm, it allocates nothing (5 rows: Q8_0/Q4_0's generated kernels where they run).
        Assert.Equal(0, Allocations.Least(() => decoder.Forward([new DecodeRow(0, 0, 5, null)], tokens.AsSpan(0, 5), logits)));
        for (int t = 5; t < tokens.Length; t++)
        {
            decoder.Forward([new DecodeRow(0, t, 1, null)], tokens.AsSpan(t, 1), logits);
            double error = Reference.RelativeError(logits, Reference.ToDouble(full.AsSpan(t * v, v)));
            Assert.True(error <= limit, $"{format} decode at {t}: ‖Δ‖/‖ref‖ = {error:E2}");
        }
        Assert.Equal(0, Allocations.Least(() => decoder.Forward([new DecodeRow(0, 7, 1, null)], tokens.AsSpan(7, 1), logits)));
    }

    [Fact]
    public void As_stored_a_bf16_checkpoint_stays_bf16_and_a_quantized_base_takes_a_fraction_of_float32()
    {
        using var f32 = LlamaCheckpoint.Load(_backend, _dir, maxBatch: 1, context: 12);
        using var bf16 = LlamaCheckpoint.Load(_backend, _dir, maxBatch: 1, context: 12, storage: WeightStorage.AsStored);
        using var q8 = LlamaCheckpoint.Load(_backend, _dir, maxBatch: 1, context: 12, storage: WeightStorage.Quantized(WeightFormat.Q8_0));
        using var q4 = LlamaCheckpoint.Load(_backend, _dir, maxBatch: 1, context: 12, storage: WeightStorage.Quantized(WeightFormat.Q4_0));
        Assert.Empty(f32.Parameters.Stored);
        Assert.All(bf16.Parameters.Stored.Values, m => Assert.Equal(WeightFormat.BF16, m.Format));
        long Bytes(GptModel m) => m.Parameters.ValueBytes + m.Parameters.StoredBytes;
        double full = Bytes(f32);
        Assert.InRange(Bytes(bf16) / full, 0.49, 0.53);
        Assert.InRange(Bytes(q8) / full, 0.26, 0.30);
        Assert.InRange(Bytes(q4) / full, 0.14, 0.18);
    }

    [Fact]
    public void Stored_weights_are_frozen_and_say_why_they_cannot_be_merged_into()
    {
        using var model = LlamaCheckpoint.Load(_backend, _dir, maxBatch: 1, context: 12, training: true, storage: WeightStorage.Quantized(WeightFormat.NF4));
        var e = Assert.Throws<InvalidOperationException>(() => model.Linears[0].Weight);
        Assert.Contains("NF4", e.Message);
        using var lora = new LoraModel(model);
        lora.AddAdapter("a", new LoraConfig { TargetModules = ["q"], Defaults = new LoraOptions { Rank = 2, Alpha = 4, Init = LoraInit.Random, Seed = 1 } });
        var merge = Assert.Throws<InvalidOperationException>(() => lora.Merge());
        Assert.Contains("float32", merge.Message);
        var bad = Assert.Throws<ArgumentException>(() => new GptModel(_backend, model.Config, 1, training: true, trainParameters: true,
            storage: (_, _) => WeightFormat.Q8_0));
        Assert.Equal("storage", bad.ParamName);
    }

    [Theory]
    [InlineData(WeightFormat.NF4)]
    [InlineData(WeightFormat.Q4_0)]
    public void A_qlora_step_has_the_finite_difference_gradients_and_allocates_nothing(WeightFormat format)
    {
        using var model = LlamaCheckpoint.Load(_backend, _dir, maxBatch: 2, context: 12, training: true, storage: WeightStorage.Quantized(format));
        using var lora = new LoraModel(model);
        var adapter = lora.AddAdapter("qlora", new LoraConfig
        {
            TargetModules = ["q", "v", "down"], Defaults = new LoraOptions { Rank = 2, Alpha = 4, Init = LoraInit.Random, Seed = 7 },
        });
        adapter.Training = true;
        int[] tokens = Enumerable.Range(0, 16).Select(i => (i * 5 + 2) % Shape.Vocabulary).ToArray();
        int[] next = tokens.Skip(1).Append(4).ToArray();
        using var ids = _backend.Allocate(DType.I32, new Shape(2, 8));
        using var targets = _backend.Allocate(DType.I32, new Shape(2, 8));
        ids.CopyFrom(tokens);
        targets.CopyFrom(next);
        float Loss() => model.Forward(ids, targets);
        var parameters = adapter.Parameters;
        parameters.ZeroGradients();
        Loss();
        model.Backward();
        var analytic = parameters.Gradients.ToArray();
        var values = parameters.Values.ToArray();
        var rng = new Random(5);
        const float h = 1e-2f;
        for (int probe = 0; probe < 12; probe++)
        {
            int i = rng.Next(values.Length);
            if (values[i] == 0 && analytic[i] == 0) continue;
            var copy = (float[])values.Clone();
            copy[i] = values[i] + h;
            parameters.Values.CopyFrom(copy);
            double up = Loss();
            copy[i] = values[i] - h;
            parameters.Values.CopyFrom(copy);
            double down = Loss();
            parameters.Values.CopyFrom(values);
            double numeric = (up - down) / (2 * h);
            Assert.True(Math.Abs(numeric - analytic[i]) <= 2e-3 + 0.05 * Math.Abs(numeric),
                $"{format} parameter {i}: analytic {analytic[i]:E3}, finite difference {numeric:E3}");
        }
        for (int i = 0; i < 2; i++)
        {
            parameters.ZeroGradients();
            Loss();
            model.Backward();
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 3; i++)
        {
            parameters.ZeroGradients();
            Loss();
            model.Backward();
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    /// <summary>The checkpoint's tensors (random, norms about 1), rounded to BF16 as the file stores them.</summary>
    private static Dictionary<string, (float[] Values, int[] Dims)> Tensors() => Tensors(Shape, seed: 11);

    /// <summary>
    /// The tensors of a tiny Llama checkpoint of <paramref name="shape"/> in Hugging Face's names: random values about 0
    /// (norms about 1), rounded to BF16 as a file stores them.
    /// </summary>
    internal static Dictionary<string, (float[] Values, int[] Dims)> Tensors(LlamaShape shape, int seed)
    {
        var rng = new Random(seed);
        var t = new Dictionary<string, (float[], int[])>(StringComparer.Ordinal);
        void Add(string name, float offset, params int[] dims)
        {
            var values = Enumerable.Range(0, dims.Aggregate(1, (a, b) => a * b)).Select(_ => offset + 0.4f * (2 * rng.NextSingle() - 1)).ToArray();
            for (int i = 0; i < values.Length; i++) values[i] = BitConverter.UInt32BitsToSingle((uint)WeightRows.ToBFloat16(values[i]) << 16);
            t[name] = (values, dims);
        }
        int c = shape.Hidden, q = shape.Heads * shape.HeadDim, kv = shape.KvHeads * shape.HeadDim, inter = shape.Intermediate;
        Add("model.embed_tokens.weight", 0, shape.Vocabulary, c);
        for (int l = 0; l < shape.Layers; l++)
        {
            string p = $"model.layers.{l}.";
            Add(p + "input_layernorm.weight", 1, c);
            Add(p + "post_attention_layernorm.weight", 1, c);
            Add(p + "self_attn.q_proj.weight", 0, q, c);
            Add(p + "self_attn.k_proj.weight", 0, kv, c);
            Add(p + "self_attn.v_proj.weight", 0, kv, c);
            Add(p + "self_attn.o_proj.weight", 0, c, q);
            Add(p + "mlp.gate_proj.weight", 0, inter, c);
            Add(p + "mlp.up_proj.weight", 0, inter, c);
            Add(p + "mlp.down_proj.weight", 0, c, inter);
        }
        Add("model.norm.weight", 1, c);
        return t;
    }

    /// <summary>The checkpoint's weights as a model holding them in <paramref name="format"/> has them, in float64.</summary>
    private static Dictionary<string, double[]> Dequantized(WeightFormat format)
    {
        var result = new Dictionary<string, double[]>(StringComparer.Ordinal);
        foreach (var (name, (values, dims)) in Tensors())
        {
            var held = values;
            if (format != WeightFormat.F32 && dims.Length == 2 && StoredSuffixes.Any(name.EndsWith))
            {
                var encoded = new byte[dims[0] * format.RowBytes(dims[1])];
                WeightRows.Encode(format, values, encoded);
                held = new float[values.Length];
                WeightRows.Decode(format, encoded, held);
            }
            result[name] = Reference.ToDouble(held);
        }
        return result;
    }
}

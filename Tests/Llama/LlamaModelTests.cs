using LoraRuntime.Cpu;
using LoraRuntime.Layers;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Llama;

/// <summary>
/// Llama-family models (Llama with grouped-query attention and an untied head, Qwen2 with q/k/v biases and one
/// key/value head, an explicit head size, partial rotary, the linear, llama3 and yarn scalings, every bias) against the
/// independent float64 reference: the training forward's logits within 1e-5 relative.
/// </summary>
public sealed class LlamaModelTests
{
    private const double Tolerance = 1e-5;
    private readonly CpuBackend _backend = new();

    public static TheoryData<string> Shapes => new(Cases.Keys);

    /// <summary>Tiny shapes of each architecture's options (block size 12 unless the scaling needs more).</summary>
    internal static readonly Dictionary<string, LlamaShape> Cases = new()
    {
        ["llama-gqa"] = new(19, 32, 40, 2, 4, 2, 8, 1e-5, false, false, false, false, 10000),
        ["qwen2-mqa-bias"] = new(23, 24, 36, 2, 4, 1, 6, 1e-6, true, false, false, true, 1e6),
        ["head-dim"] = new(17, 24, 32, 1, 3, 3, 16, 1e-6, false, false, false, true, 10000),
        ["partial-rotary"] = new(17, 32, 24, 1, 2, 2, 16, 1e-5, false, false, false, true, 500, PartialRotary: 0.5),
        ["all-biases"] = new(13, 16, 24, 2, 2, 1, 8, 1e-5, true, true, true, false, 10000),
        ["linear"] = new(13, 16, 24, 1, 2, 2, 8, 1e-5, false, false, false, true, 100, RopeType: "linear", Factor: 2),
        ["llama3"] = new(13, 32, 24, 1, 2, 1, 16, 1e-5, false, false, false, true, 500, RopeType: "llama3", Factor: 8, OriginalMax: 16),
        ["yarn"] = new(13, 32, 24, 1, 2, 2, 16, 1e-5, false, false, false, true, 1000, RopeType: "yarn", Factor: 4, OriginalMax: 8),
        ["qwen3-qk-norm"] = new(17, 24, 32, 2, 4, 2, 16, 1e-6, false, false, false, true, 1000000, QkNorm: true),
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Training_forward_logits_match_the_float64_reference(string name)
    {
        var shape = Cases[name];
        int time = 12;
        using var model = Build(_backend, shape, time, seed: name.Length);
        var tokens = Enumerable.Range(0, time).Select(i => (i * 5 + 2) % shape.Vocabulary).ToArray();
        using var ids = _backend.Allocate(DType.I32, new Shape(1, time));
        _backend.Upload(ids, tokens);
        model.Forward(ids);
        var expected = new LlamaReference(shape, HuggingFaceWeights(model, shape)).Logits(tokens);
        double error = Reference.RelativeError(model.Logits.ToArray(), expected);
        Assert.True(error <= Tolerance, $"{name}: ‖Δ‖/‖ref‖ = {error:E2}");
    }

    [Theory]
    [InlineData("llama-gqa")]
    [InlineData("all-biases")]
    [InlineData("fused-rotary")]
    [InlineData("qwen3-qk-norm")]
    public void Gradients_of_the_loss_match_finite_differences_of_the_reference(string name)
    {
        var shape = name == "fused-rotary" ? new LlamaShape(11, 32, 16, 1, 2, 2, 16, 1e-5, true, false, false, false, 10000, PartialRotary: 0.5) : Cases[name];
        int time = 6;
        var config = Config(shape, time);
        using var model = new GptModel(_backend, config, maxBatch: 1, training: true, trainParameters: true);
        var rng = new Random(7);
        foreach (var p in model.Parameters.Parameters)
        {
            bool norm = p.Name.Contains("ln", StringComparison.Ordinal) || p.Name.Contains("_norm", StringComparison.Ordinal);
            p.Value.CopyFrom(Enumerable.Range(0, (int)p.Shape.Length).Select(_ => (norm ? 1 : 0) + 0.4f * (2 * rng.NextSingle() - 1)).ToArray());
        }
        int[] tokens = Enumerable.Range(0, time).Select(i => (i * 3 + 1) % shape.Vocabulary).ToArray(), targets = tokens.Select(t => (t * 7 + 2) % shape.Vocabulary).ToArray();
        using var ids = _backend.Allocate(DType.I32, new Shape(1, time));
        using var target = _backend.Allocate(DType.I32, new Shape(1, time));
        _backend.Upload(ids, tokens);
        _backend.Upload(target, targets);
        model.Parameters.ZeroGradients();
        model.Forward(ids, target);
        model.Backward();
        var ours = model.Parameters.Parameters.ToDictionary(p => p.Name, p => Reference.ToDouble(p.Value.ToArray()));
        double Loss()
        {
            var logits = new LlamaReference(shape, HuggingFaceWeights(ours, shape)).Logits(tokens);
            double sum = 0;
            for (int i = 0; i < time; i++)
            {
                var row = logits.AsSpan(i * shape.Vocabulary, shape.Vocabulary);
                double max = double.NegativeInfinity;
                foreach (double v in row) max = Math.Max(max, v);
                double z = 0;
                foreach (double v in row) z += Math.Exp(v - max);
                sum += max + Math.Log(z) - row[targets[i]];
            }
            return sum / time;
        }
        const double h = 1e-5;
        foreach (var p in model.Parameters.Parameters)
        {
            var values = ours[p.Name];
            var expected = new double[values.Length];
            for (int i = 0; i < values.Length; i++)
            {
                double keep = values[i];
                values[i] = keep + h;
                double up = Loss();
                values[i] = keep - h;
                double down = Loss();
                values[i] = keep;
                expected[i] = (up - down) / (2 * h);
            }
            double error = Reference.RelativeError(p.Gradient.ToArray(), expected);
            Assert.True(error <= 1e-4, $"{name}: d{p.Name}: ‖Δ‖/‖ref‖ = {error:E2}");
        }
    }

    [Fact]
    public void A_training_step_and_a_decode_step_allocate_nothing()
    {
        var shape = Cases["llama-gqa"];
        using var model = new GptModel(_backend, Config(shape, 12), maxBatch: 2, training: true, trainParameters: true);
        using var ids = _backend.Allocate(DType.I32, new Shape(2, 12));
        using var targets = _backend.Allocate(DType.I32, new Shape(2, 12));
        _backend.Upload(ids, Enumerable.Range(0, 24).Select(i => i % shape.Vocabulary).ToArray());
        _backend.Upload(targets, Enumerable.Range(0, 24).Select(i => (i + 1) % shape.Vocabulary).ToArray());
        model.Initialize(3);
        void Step()
        {
            model.Parameters.ZeroGradients();
            model.Forward(ids, targets);
            model.Backward();
        }
        for (int i = 0; i < 3; i++) Step();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 5; i++) Step();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);

        using var decoder = new LoraRuntime.Layers.Serving.KvCacheDecoder(new LoraRuntime.Layers.Serving.ServingLayout(model), slots: 2, maxStepTokens: 12);
        var logits = new float[2 * shape.Vocabulary];
        LoraRuntime.Layers.Serving.DecodeRow[] prefill = [new(0, 0, 4, null), new(1, 0, 3, null)];
        decoder.Forward(prefill, [1, 2, 3, 4, 5, 6, 7], logits);
        LoraRuntime.Layers.Serving.DecodeRow[] step = [new(0, 4, 1, null), new(1, 3, 1, null)];
        int[] next = [8, 9];
        decoder.Forward(step, next, logits);
        before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 5; i++)
        {
            step[0] = step[0] with { Start = 5 + i };
            step[1] = step[1] with { Start = 4 + i };
            decoder.Forward(step, next, logits);
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    /// <summary>The configuration of <paramref name="shape"/> with a context of <paramref name="blockSize"/>.</summary>
    internal static GptConfig Config(LlamaShape shape, int blockSize) => new(shape.Vocabulary, shape.Layers, shape.Heads, shape.Hidden, blockSize, (float)shape.RmsEps)
    {
        Norm = NormKind.RmsNorm, Mlp = MlpKind.GatedSilu, IntermediateSize = shape.Intermediate, KeyValueHeads = shape.KvHeads, HeadSize = shape.HeadDim,
        QkvBias = shape.QkvBias, OutputBias = shape.OutputBias, MlpBias = shape.MlpBias, TiedHead = shape.Tied, QkNorm = shape.QkNorm,
        Rotary = new RotaryOptions
        {
            Theta = shape.RopeTheta, PartialFactor = shape.PartialRotary,
            Scaling = shape.RopeType switch { "linear" => RopeScaling.Linear, "llama3" => RopeScaling.Llama3, "yarn" => RopeScaling.Yarn, _ => RopeScaling.None },
            Factor = shape.Factor, OriginalMaxPositions = shape.OriginalMax, LowFrequencyFactor = shape.LowFreq, HighFrequencyFactor = shape.HighFreq,
            BetaFast = shape.BetaFast, BetaSlow = shape.BetaSlow, AttentionFactor = shape.AttentionFactor,
        },
    };

    /// <summary>A model of <paramref name="shape"/> with every parameter random (norm weights about 1).</summary>
    internal static GptModel Build(Backend backend, LlamaShape shape, int blockSize, int seed, bool training = false)
    {
        var model = new GptModel(backend, Config(shape, blockSize), maxBatch: 1, training, trainParameters: false);
        var rng = new Random(seed);
        foreach (var p in model.Parameters.Parameters)
        {
            bool norm = p.Name.Contains("ln", StringComparison.Ordinal) || p.Name.Contains("_norm", StringComparison.Ordinal);
            p.Value.CopyFrom(Enumerable.Range(0, (int)p.Shape.Length).Select(_ => (norm ? 1 : 0) + 0.4f * (2 * rng.NextSingle() - 1)).ToArray());
        }
        return model;
    }

    /// <summary>The model's weights under Hugging Face's names: the fused projections cut back into q/k/v and gate/up.</summary>
    internal static Dictionary<string, double[]> HuggingFaceWeights(GptModel model, LlamaShape shape) =>
        HuggingFaceWeights(model.Parameters.Parameters.ToDictionary(p => p.Name, p => Reference.ToDouble(p.Value.ToArray())), shape);

    /// <summary>Our parameters by name, under Hugging Face's names.</summary>
    internal static Dictionary<string, double[]> HuggingFaceWeights(Dictionary<string, double[]> ours, LlamaShape shape)
    {
        int c = shape.Hidden, q = shape.Heads * shape.HeadDim, kv = shape.KvHeads * shape.HeadDim, inter = shape.Intermediate;
        var hf = new Dictionary<string, double[]>
        {
            ["model.embed_tokens.weight"] = ours["wte.weight"],
            ["model.norm.weight"] = ours["ln_f.weight"],
        };
        if (!shape.Tied) hf["lm_head.weight"] = ours["lm_head.weight"];
        double[] Rows(double[] m, int first, int count, int width) => m.AsSpan(first * width, count * width).ToArray();
        for (int l = 0; l < shape.Layers; l++)
        {
            string o = $"blocks.{l}.", h = $"model.layers.{l}.";
            hf[h + "input_layernorm.weight"] = ours[o + "ln1.weight"];
            hf[h + "post_attention_layernorm.weight"] = ours[o + "ln2.weight"];
            var qkv = ours[o + "attn.qkv.weight"];
            hf[h + "self_attn.q_proj.weight"] = Rows(qkv, 0, q, c);
            hf[h + "self_attn.k_proj.weight"] = Rows(qkv, q, kv, c);
            hf[h + "self_attn.v_proj.weight"] = Rows(qkv, q + kv, kv, c);
            if (shape.QkvBias)
            {
                var b = ours[o + "attn.qkv.bias"];
                hf[h + "self_attn.q_proj.bias"] = Rows(b, 0, q, 1);
                hf[h + "self_attn.k_proj.bias"] = Rows(b, q, kv, 1);
                hf[h + "self_attn.v_proj.bias"] = Rows(b, q + kv, kv, 1);
            }
            hf[h + "self_attn.o_proj.weight"] = ours[o + "attn.o.weight"];
            if (shape.QkNorm)
            {
                hf[h + "self_attn.q_norm.weight"] = ours[o + "attn.q_norm.weight"];
                hf[h + "self_attn.k_norm.weight"] = ours[o + "attn.k_norm.weight"];
            }
            if (shape.OutputBias) hf[h + "self_attn.o_proj.bias"] = ours[o + "attn.o.bias"];
            var gateUp = ours[o + "mlp.gate_up.weight"];
            hf[h + "mlp.gate_proj.weight"] = Rows(gateUp, 0, inter, c);
            hf[h + "mlp.up_proj.weight"] = Rows(gateUp, inter, inter, c);
            hf[h + "mlp.down_proj.weight"] = ours[o + "mlp.down.weight"];
            if (shape.MlpBias)
            {
                var b = ours[o + "mlp.gate_up.bias"];
                hf[h + "mlp.gate_proj.bias"] = Rows(b, 0, inter, 1);
                hf[h + "mlp.up_proj.bias"] = Rows(b, inter, inter, 1);
                hf[h + "mlp.down_proj.bias"] = ours[o + "mlp.down.bias"];
            }
        }
        return hf;
    }
}

using System.Text.Json;
using static LoraRuntime.Layers.ConfigFields;

namespace LoraRuntime.Layers;

/// <summary>
/// The <c>config.json</c> of a Hugging Face Llama-family checkpoint — <c>model_type</c> llama (Llama 2/3.x, SmolLM2,
/// TinyLlama), mistral, qwen2 or qwen3 — read into a <see cref="GptConfig"/> with RMSNorm, rotary positions, the gated
/// SiLU MLP, grouped-query attention and the biases each architecture has (llama/mistral/qwen3: <c>attention_bias</c>
/// on q, k, v and o, <c>mlp_bias</c>; qwen2: on q, k, v only), and Qwen3's per-head q/k norms. Rotary options come from transformers v4 keys (<c>rope_theta</c>,
/// <c>rope_scaling</c>) or v5 ones (<c>rope_parameters</c>). What the runtime does not compute exactly is refused
/// naming the key and its value: another activation, a sliding window shorter than the context, rope types other than
/// default, linear, dynamic, llama3 and yarn.
/// </summary>
internal static class LlamaConfig
{
    /// <summary>The context reserved when none is asked for.</summary>
    public const int DefaultContext = 1024;

    /// <summary>The model types read here.</summary>
    public static readonly IReadOnlyList<string> ModelTypes = ["llama", "mistral", "qwen2", "qwen3"];

    /// <summary>True when <paramref name="root"/> names one of <see cref="ModelTypes"/>.</summary>
    public static bool IsLlamaFamily(JsonElement root) =>
        root.ValueKind == JsonValueKind.Object && root.TryGetProperty("model_type", out var type) && type.ValueKind == JsonValueKind.String
        && ModelTypes.Contains(type.GetString());

    /// <summary>
    /// The architecture in <paramref name="root"/> for contexts of up to <paramref name="context"/> positions (capped at
    /// <c>max_position_embeddings</c>; null: that, at most <see cref="DefaultContext"/>: a model reserves its activations
    /// for its whole context); <paramref name="path"/> names the file in errors.
    /// </summary>
    public static GptConfig Parse(JsonElement root, string path, int? context = null)
    {
        string type = root.TryGetProperty("model_type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "";
        if (!ModelTypes.Contains(type)) throw Invalid(path, "model_type", string.Join(" or ", ModelTypes.Select(m => $"\"{m}\"")), t.ValueKind == JsonValueKind.Undefined ? "nothing" : t.GetRawText());
        string activation = root.TryGetProperty("hidden_act", out var act) && act.ValueKind == JsonValueKind.String ? act.GetString()! : "silu";
        if (activation != "silu") throw Invalid(path, "hidden_act", "\"silu\" (the gated MLP's SiLU)", act.GetRawText());
        int vocabulary = Int(root, "vocab_size", path), hidden = Int(root, "hidden_size", path), intermediate = Int(root, "intermediate_size", path);
        int layers = Int(root, "num_hidden_layers", path), heads = Int(root, "num_attention_heads", path);
        int kvHeads = OptionalInt(root, "num_key_value_heads", path) ?? heads;
        int? headDim = OptionalInt(root, "head_dim", path);
        int maxPositions = OptionalInt(root, "max_position_embeddings", path) ?? 2048;
        if (context is { } c && c < 1) throw new ArgumentOutOfRangeException(nameof(context), c, $"context: expected ≥ 1 positions; got {c}");
        int positions = Math.Min(context ?? DefaultContext, maxPositions);
        CheckSlidingWindow(root, type, positions, path);
        CheckQuantization(root, path);
        bool attentionBias = Bool(root, "attention_bias", false, path), mlpBias = Bool(root, "mlp_bias", false, path);
        float epsilon = (float)(OptionalDouble(root, "rms_norm_eps", path) ?? 1e-6);
        var config = new GptConfig(vocabulary, layers, heads, hidden, positions, epsilon)
        {
            Norm = NormKind.RmsNorm,
            Mlp = MlpKind.GatedSilu,
            IntermediateSize = intermediate,
            KeyValueHeads = kvHeads,
            HeadSize = headDim,
            QkvBias = type == "qwen2" || attentionBias,
            OutputBias = type != "qwen2" && attentionBias,
            MlpBias = type != "qwen2" && mlpBias,
            TiedHead = Bool(root, "tie_word_embeddings", false, path),
            QkNorm = type == "qwen3",
            Rotary = Rotary(root, maxPositions, path),
        };
        try
        {
            config.Validate();
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{path}: not a usable {type} configuration: {e.Message}", e);
        }
        return config;
    }

    /// <summary>The rotary options from <c>rope_parameters</c> (v5) or <c>rope_theta</c> and <c>rope_scaling</c> (v4).</summary>
    private static RotaryOptions Rotary(JsonElement root, int maxPositions, string path)
    {
        JsonElement? parameters = root.TryGetProperty("rope_parameters", out var p) && p.ValueKind == JsonValueKind.Object ? p : null;
        JsonElement? scaling = root.TryGetProperty("rope_scaling", out var s) && s.ValueKind == JsonValueKind.Object ? s : parameters;
        if (root.TryGetProperty("rope_scaling", out var raw) && raw.ValueKind is not (JsonValueKind.Object or JsonValueKind.Null))
            throw Invalid(path, "rope_scaling", "an object or null", raw.GetRawText());
        double theta = (parameters is { } v5 ? OptionalDouble(v5, "rope_theta", path) : null) ?? OptionalDouble(root, "rope_theta", path) ?? 10000;
        double partial = (parameters is { } v5p ? OptionalDouble(v5p, "partial_rotary_factor", path) : null) ?? OptionalDouble(root, "partial_rotary_factor", path) ?? 1;
        var options = new RotaryOptions { Theta = theta, PartialFactor = partial, OriginalMaxPositions = maxPositions };
        if (scaling is not { } sc) return options;
        string key = parameters is not null && !root.TryGetProperty("rope_scaling", out _) ? "rope_parameters" : "rope_scaling";
        string kind = sc.TryGetProperty("rope_type", out var rt) && rt.ValueKind == JsonValueKind.String ? rt.GetString()!
            : sc.TryGetProperty("type", out var ty) && ty.ValueKind == JsonValueKind.String ? ty.GetString()! : "default";
        var scalingKind = kind switch
        {
            "default" => RopeScaling.None,
            "linear" => RopeScaling.Linear,
            "dynamic" => RopeScaling.Dynamic,
            "llama3" => RopeScaling.Llama3,
            "yarn" => RopeScaling.Yarn,
            _ => throw Invalid(path, key + ".rope_type", "default, linear, dynamic, llama3 or yarn", $"\"{kind}\""),
        };
        foreach (string unsupported in new[] { "mscale", "mscale_all_dim", "short_factor", "long_factor" })
            if (sc.TryGetProperty(unsupported, out var u) && u.ValueKind != JsonValueKind.Null)
                throw new InvalidDataException($"{path}: {key}.{unsupported} = {u.GetRawText()} is not supported");
        if (scalingKind == RopeScaling.None) return options;
        return options with
        {
            Scaling = scalingKind,
            Factor = OptionalDouble(sc, "factor", path) ?? throw Invalid(path, key + ".factor", "a number", "nothing"),
            OriginalMaxPositions = OptionalInt(sc, "original_max_position_embeddings", path) ?? maxPositions,
            LowFrequencyFactor = OptionalDouble(sc, "low_freq_factor", path) ?? 1,
            HighFrequencyFactor = OptionalDouble(sc, "high_freq_factor", path) ?? 4,
            BetaFast = OptionalDouble(sc, "beta_fast", path) ?? 32,
            BetaSlow = OptionalDouble(sc, "beta_slow", path) ?? 1,
            AttentionFactor = OptionalDouble(sc, "attention_factor", path),
        };
    }

    /// <summary>
    /// A <c>quantization_config</c> is read only for bitsandbytes' 4-bit NF4 checkpoints (<see cref="BitsAndBytesWeight"/>);
    /// any other method (GPTQ, AWQ, LLM.int8, FP4…) is refused naming the field.
    /// </summary>
    private static void CheckQuantization(JsonElement root, string path)
    {
        if (!root.TryGetProperty("quantization_config", out var q) || q.ValueKind == JsonValueKind.Null) return;
        if (q.ValueKind != JsonValueKind.Object) throw Invalid(path, "quantization_config", "an object", q.GetRawText());
        string method = q.TryGetProperty("quant_method", out var m) && m.ValueKind == JsonValueKind.String ? m.GetString()! : "";
        if (method != "bitsandbytes")
            throw Invalid(path, "quantization_config.quant_method", "\"bitsandbytes\" (4-bit NF4; other quantized checkpoints are not read: use the float checkpoint, or a GGUF file)",
                m.ValueKind == JsonValueKind.Undefined ? "nothing" : m.GetRawText());
        if (!Bool(q, "load_in_4bit", false, path))
            throw Invalid(path, "quantization_config.load_in_4bit", "true (bitsandbytes' 8-bit LLM.int8 checkpoints are not read)", q.TryGetProperty("load_in_4bit", out var b) ? b.GetRawText() : "nothing");
        if (q.TryGetProperty("bnb_4bit_quant_type", out var type) && (type.ValueKind != JsonValueKind.String || type.GetString() != "nf4"))
            throw Invalid(path, "quantization_config.bnb_4bit_quant_type", "\"nf4\"", type.GetRawText());
    }

    /// <summary>A sliding window is honoured when no sequence can exceed it; otherwise refused naming the key.</summary>
    private static void CheckSlidingWindow(JsonElement root, string type, int positions, string path)
    {
        bool used = type != "qwen2" || Bool(root, "use_sliding_window", false, path);
        if (!used) return;
        if (OptionalInt(root, "sliding_window", path) is { } window && window < positions)
            throw new InvalidDataException(
                $"{path}: sliding_window = {window} is shorter than the context of {positions} positions; sliding-window attention is not supported (reserve a context of at most {window})");
    }
}

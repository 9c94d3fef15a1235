using System.Text.Json;
using static LoraRuntime.Layers.ConfigFields;

namespace LoraRuntime.Layers;

/// <summary>
/// The <c>config.json</c> of a Hugging Face GPT-2 checkpoint (<c>model_type</c> "gpt2"), read into a
/// <see cref="GptConfig"/>. Only what <see cref="GptModel"/> computes exactly is accepted: the tanh GELU
/// (<c>gelu_new</c>, or <c>gelu_pytorch_tanh</c>, the same formula), n_inner = 4C, attention scaled by 1/√HS and
/// nothing else, a head tied to wte, no cross-attention. Anything else is refused, naming the field. Dropout
/// probabilities are read and ignored: <see cref="GptModel"/> has no dropout, which is inference's behaviour.
/// </summary>
internal static class Gpt2Config
{
    /// <summary>The <c>model_type</c> of a GPT-2 configuration.</summary>
    public const string ModelType = "gpt2";

    /// <summary>True when <paramref name="root"/> reads as a Hugging Face GPT-2 configuration rather than ours (which has block_size).</summary>
    public static bool IsGpt2(JsonElement root) =>
        root.ValueKind == JsonValueKind.Object
        && (root.TryGetProperty("model_type", out var type) ? type.ValueKind == JsonValueKind.String && type.GetString() == ModelType
            : !root.TryGetProperty("block_size", out _) && (root.TryGetProperty("n_positions", out _) || root.TryGetProperty("n_ctx", out _)));

    /// <summary>The architecture in <paramref name="root"/>; <paramref name="path"/> names the file in errors.</summary>
    public static GptConfig Parse(JsonElement root, string path)
    {
        if (root.TryGetProperty("model_type", out var type) && type.GetString() != ModelType)
            throw Invalid(path, "model_type", $"\"{ModelType}\"", type.GetRawText());
        int vocabulary = Int(root, "vocab_size", path);
        int channels = Int(root, "n_embd", path);
        int layers = Int(root, "n_layer", path);
        int heads = Int(root, "n_head", path);
        int? positions = OptionalInt(root, "n_positions", path), context = OptionalInt(root, "n_ctx", path);
        if (positions is null && context is null) throw Invalid(path, "n_positions", "the number of positions (n_positions or n_ctx)", "neither");
        if (positions is not null && context is not null && positions != context)
            throw Invalid(path, "n_ctx", $"n_ctx equal to n_positions = {positions}", context.ToString()!);
        if (OptionalInt(root, "n_inner", path) is { } inner && inner != 4 * channels)
            throw Invalid(path, "n_inner", $"null or 4·n_embd = {4 * channels} (the MLP is [4C, C])", inner.ToString());
        string activation = root.TryGetProperty("activation_function", out var act) ? act.GetString() ?? "null" : "gelu_new";
        if (activation is not ("gelu_new" or "gelu_pytorch_tanh"))
            throw Invalid(path, "activation_function", "gelu_new (GELU's tanh form)", activation);
        RequireFlag(root, "scale_attn_weights", true, path);
        RequireFlag(root, "scale_attn_by_inverse_layer_idx", false, path);
        RequireFlag(root, "reorder_and_upcast_attn", false, path);
        RequireFlag(root, "add_cross_attention", false, path);
        RequireFlag(root, "tie_word_embeddings", true, path);
        float epsilon = 1e-5f;
        if (root.TryGetProperty("layer_norm_epsilon", out var eps))
        {
            if (eps.ValueKind != JsonValueKind.Number) throw Invalid(path, "layer_norm_epsilon", "a number", eps.GetRawText());
            epsilon = (float)eps.GetDouble();
        }
        var config = new GptConfig(vocabulary, layers, heads, channels, positions ?? context!.Value, epsilon);
        try
        {
            config.Validate();
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{path}: not a usable GPT-2 configuration: {e.Message}", e);
        }
        return config;
    }

    /// <summary>Writes <paramref name="config"/> as a GPT-2 configuration (dropout 0, the head tied).</summary>
    public static void Write(Utf8JsonWriter json, GptConfig config)
    {
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(config);
        json.WriteStartObject();
        json.WriteString("model_type", ModelType);
        json.WriteStartArray("architectures");
        json.WriteStringValue("GPT2LMHeadModel");
        json.WriteEndArray();
        json.WriteNumber("vocab_size", config.Vocabulary);
        json.WriteNumber("n_positions", config.BlockSize);
        json.WriteNumber("n_ctx", config.BlockSize);
        json.WriteNumber("n_embd", config.Channels);
        json.WriteNumber("n_layer", config.Layers);
        json.WriteNumber("n_head", config.Heads);
        json.WriteNull("n_inner");
        json.WriteString("activation_function", "gelu_new");
        json.WriteNumber("layer_norm_epsilon", config.LayerNormEpsilon);
        json.WriteNumber("resid_pdrop", 0);
        json.WriteNumber("embd_pdrop", 0);
        json.WriteNumber("attn_pdrop", 0);
        json.WriteBoolean("scale_attn_weights", true);
        json.WriteBoolean("scale_attn_by_inverse_layer_idx", false);
        json.WriteBoolean("reorder_and_upcast_attn", false);
        json.WriteBoolean("tie_word_embeddings", true);
        json.WriteEndObject();
    }

    private static void RequireFlag(JsonElement root, string name, bool supported, string path)
    {
        if (!root.TryGetProperty(name, out var value)) return;
        if (value.ValueKind is not (JsonValueKind.True or JsonValueKind.False)) throw Invalid(path, name, "true or false", value.GetRawText());
        if (value.GetBoolean() != supported)
            throw new InvalidDataException(
                $"{path}: {name} = {value.GetRawText()} is not supported (only {(supported ? "true" : "false")}: the model computes GPT-2's standard attention and tied head)");
    }
}

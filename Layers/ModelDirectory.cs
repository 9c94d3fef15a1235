using System.Text.Json;
using LoraRuntime.IO;
using LoraRuntime.Layers.Text;

namespace LoraRuntime.Layers;

/// <summary>How a model directory stores its weights and configuration.</summary>
public enum ModelLayout
{
    /// <summary>Ours (written by <c>lora train</c>): our parameter names ("blocks.0.attn.qkv"), a character vocabulary in config.json.</summary>
    LoraRuntime,

    /// <summary>Hugging Face GPT-2 (model.safetensors, GPT-2's parameter names such as "h.0.attn.c_attn"), with vocab.json and merges.txt for its BPE tokenizer.</summary>
    Gpt2,

    /// <summary>
    /// A Hugging Face Llama-family checkpoint (llama, mistral, qwen2: "model.layers.0.self_attn.q_proj"), its q, k, v and
    /// gate, up projections separate modules (slices of our fused ones), one safetensors file or shards.
    /// </summary>
    Llama,
}

/// <summary>
/// Loads a model directory of any layout, told apart by its config.json (model_type "gpt2", or n_positions and no
/// block_size, is GPT-2's; llama, mistral, qwen2 and qwen3 are the Llama family's), with its tokenizer: the character
/// vocabulary of ours, GPT-2's byte-level BPE (<see cref="BpeTokenizer"/>) from vocab.json and merges.txt, a
/// Llama-family checkpoint's byte-level BPE from its tokenizer.json (<see cref="HuggingFaceTokenizer"/>; without one, or
/// with a kind not read yet, the model comes without a tokenizer: token ids only).
/// </summary>
internal static class ModelDirectory
{
    /// <summary>The layout of <paramref name="directory"/>, from its config.json.</summary>
    public static ModelLayout DetectLayout(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        string path = Path.Combine(directory, GptFiles.ConfigFile);
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"{directory}: no such model directory");
        if (!File.Exists(path)) throw new FileNotFoundException($"{directory} is not a model directory: {GptFiles.ConfigFile} is missing", path);
        try
        {
            using var doc = JsonDocument.Parse(InputFiles.ReadAllBytes(path));
            var root = doc.RootElement;
            if (LlamaConfig.IsLlamaFamily(root)) return ModelLayout.Llama;
            if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("model_type", out var type)
                && type.GetString() is { } name && name != Gpt2Config.ModelType && name != GptFiles.ModelType)
                throw new InvalidDataException(
                    $"{path}: model_type '{name}' is not supported; expected '{Gpt2Config.ModelType}', {string.Join(", ", LlamaConfig.ModelTypes.Select(m => $"'{m}'"))} or '{GptFiles.ModelType}'");
            return Gpt2Config.IsGpt2(root) ? ModelLayout.Gpt2 : ModelLayout.LoraRuntime;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new InvalidDataException($"{path}: not a valid model configuration: {e.Message}", e);
        }
    }

    /// <summary>
    /// Loads the model in <paramref name="directory"/> for inference (or, with <paramref name="training"/>, for LoRA
    /// fine-tuning with the base frozen) and its tokenizer (null for a Llama-family checkpoint whose tokenizer.json is
    /// missing or of a kind not read yet).
    /// </summary>
    /// <remarks><paramref name="storage"/> says how the frozen weights are kept (float32 when null).</remarks>
    public static (GptModel Model, ITokenizer? Tokenizer, ModelLayout Layout) Load(Backend backend, string directory, int maxBatch, bool training = false,
        WeightStorage? storage = null)
    {
        var loaded = LoadAsStored(backend, directory, maxBatch, training, storage);
        try
        {
            if (storage?.DoubleQuantized == true) loaded.Model.DoubleQuantizeNf4();
        }
        catch
        {
            loaded.Model.Dispose();
            throw;
        }
        return loaded;
    }

    private static (GptModel Model, ITokenizer? Tokenizer, ModelLayout Layout) LoadAsStored(Backend backend, string directory, int maxBatch, bool training,
        WeightStorage? storage)
    {
        if (GgufCheckpoint.IsGguf(directory))
        {
            // A GGUF file: a Llama-family base whose adapters use PEFT's Llama names, and the tokenizer its keys describe.
            var ggufTokenizer = GgufTokenizer.TryRead(directory, out _);
            var ggufModel = GgufCheckpoint.Load(backend, directory, maxBatch, training, storage);
            if (ggufTokenizer is not null && ggufTokenizer.VocabularySize > ggufModel.Config.Vocabulary)
            {
                ggufModel.Dispose();
                throw new InvalidDataException(
                    $"{directory}: the tokenizer has {ggufTokenizer.VocabularySize} tokens but token_embd.weight has {ggufModel.Config.Vocabulary} rows");
            }
            return (ggufModel, ggufTokenizer, ModelLayout.Llama);
        }
        var layout = DetectLayout(directory);
        if (layout == ModelLayout.Llama)
        {
            var model = LlamaCheckpoint.Load(backend, directory, maxBatch, training, storage: storage);
            var hf = TryLoadTokenizer(directory, out _);
            if (hf is not null && hf.VocabularySize > model.Config.Vocabulary)
            {
                model.Dispose();
                throw new InvalidDataException($"{directory}: the tokenizer has {hf.VocabularySize} tokens but the model's vocab_size is {model.Config.Vocabulary}");
            }
            return (model, hf, layout);
        }
        if (layout == ModelLayout.LoraRuntime)
            // Ours: the layout returned is the one its adapters are named in (a model compressed from a checkpoint keeps its names).
            return GptFiles.Load(backend, directory, maxBatch, training, storage);
        var tokenizer = BpeTokenizer.FromDirectory(directory);
        var config = Gpt2Checkpoint.ReadConfig(directory);
        if (tokenizer.VocabularySize > config.Vocabulary)
            throw new InvalidDataException(
                $"{directory}: the tokenizer has {tokenizer.VocabularySize} tokens but the model's vocab_size is {config.Vocabulary}");
        return (Gpt2Checkpoint.Load(backend, directory, maxBatch, training, storage), tokenizer, layout);
    }

    /// <summary>
    /// Writes <paramref name="model"/>, loaded from <paramref name="source"/> (its adapters named as
    /// <paramref name="names"/>) and changed since (a merge), into <paramref name="directory"/> in the same layout as the
    /// source, with the tokenizer: ours (config.json with the tokenizer and the adapters' module names), GPT-2's (its
    /// vocab.json and merges.txt) or a Llama-family checkpoint's (its config.json and tokenizer files copied).
    /// </summary>
    public static void SaveLike(GptModel model, ITokenizer? tokenizer, ModelLayout names, string source, string directory)
    {
        var layout = DetectLayout(source);
        AtomicDirectory.Write(directory, folder =>
        {
            switch (layout)
            {
                case ModelLayout.LoraRuntime:
                    GptFiles.Save(model, tokenizer, folder, names);
                    break;
                case ModelLayout.Gpt2:
                    Gpt2Checkpoint.Save(model, folder);
                    ((BpeTokenizer)tokenizer!).Save(folder);
                    break;
                case ModelLayout.Llama:
                    LlamaCheckpoint.Save(model, source, folder);
                    break;
            }
        });
    }

    /// <summary>
    /// The byte-level BPE tokenizer of a Hugging Face directory's tokenizer.json, or null with the reason (no file, or a
    /// kind not read yet: SentencePiece-style BPE with byte fallback).
    /// </summary>
    public static HuggingFaceTokenizer? TryLoadTokenizer(string directory, out string? reason)
    {
        string path = Path.Combine(directory, HuggingFaceTokenizer.FileName);
        reason = null;
        if (!File.Exists(path))
        {
            reason = $"{path} is missing";
            return null;
        }
        try
        {
            return HuggingFaceTokenizer.FromFile(path);
        }
        catch (Exception e) when (e is InvalidDataException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            reason = e.Message;
            return null;
        }
    }

    /// <summary>The tokenizer a command that takes text needs, or a clear error saying why the model has none.</summary>
    public static ITokenizer RequireTokenizer(ITokenizer? tokenizer, string directory, ModelLayout layout)
    {
        if (tokenizer is not null) return tokenizer;
        if (GgufCheckpoint.IsGguf(directory))
        {
            GgufTokenizer.TryRead(directory, out string? why);
            throw new InvalidDataException(
                $"{directory}: no tokenizer read from this GGUF file ({why}); its model runs on token ids (LoraEngine.Load), or load the Hugging Face checkpoint with its tokenizer.json");
        }
        TryLoadTokenizer(directory, out string? reason);
        throw new InvalidDataException(
            $"{directory}: no tokenizer for this {layout} checkpoint ({reason}); its model runs on token ids (LoraEngine.Load, lora bench)");
    }
}

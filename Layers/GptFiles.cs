using System.Text.Json;
using LoraRuntime.IO;
using LoraRuntime.Layers.Text;

namespace LoraRuntime.Layers;

/// <summary>
/// A model directory: <c>model.safetensors</c> (every parameter by its path, float32) and <c>config.json</c> (the
/// architecture and the character vocabulary; for a compressed model also <c>factored_ranks</c>, the rank K of each
/// layer stored as the two factors <c>&lt;layer&gt;.weight_u</c> [OC, K] and <c>&lt;layer&gt;.weight_v</c> [K, C]). Each file is written atomically; loading checks every name and shape
/// and names the file and tensor on any mismatch.
/// </summary>
internal static class GptFiles
{
    /// <summary>The weights' file name.</summary>
    public const string ModelFile = "model.safetensors";

    /// <summary>The configuration's file name.</summary>
    public const string ConfigFile = "config.json";

    /// <summary>The <c>model_type</c> of our configuration.</summary>
    public const string ModelType = "lora-runtime-gpt";

    /// <summary>Writes the weights and the configuration of <paramref name="model"/> into <paramref name="directory"/>.</summary>
    public static void Save(GptModel model, CharTokenizer tokenizer, string directory)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        Directory.CreateDirectory(directory);
        SaveParameters(model.Parameters, Path.Combine(directory, ModelFile), "lora-runtime-gpt");
        AtomicFile.WriteAllBytes(Path.Combine(directory, ConfigFile), ConfigJson(model.Config, tokenizer));
    }

    /// <summary>Writes every parameter of <paramref name="parameters"/> to a safetensors file.</summary>
    public static void SaveParameters(ParameterSet parameters, string path, string format)
    {
        var writer = new SafetensorsWriter();
        foreach (var p in parameters.Parameters) writer.Add(p.Name, p.Value);
        writer.AddMetadata("format", format);
        writer.Save(path);
    }

    /// <summary>Reads every parameter of <paramref name="parameters"/> from a safetensors file (names and shapes must match).</summary>
    public static void LoadParameters(ParameterSet parameters, string path)
    {
        using var reader = SafetensorsReader.Open(path);
        foreach (var p in parameters.Parameters)
        {
            if (!reader.TryGetEntry(p.Name, out _))
                throw new InvalidDataException($"{path}: no tensor '{p.Name}' (expected {p.Shape})");
            reader.LoadInto(p.Name, p.Value);
        }
    }

    /// <summary>The architecture and tokenizer of a model directory.</summary>
    public static (GptConfig Config, CharTokenizer Tokenizer) ReadConfig(string directory)
    {
        string path = Path.Combine(directory, ConfigFile);
        if (!File.Exists(path))
            throw new FileNotFoundException($"{directory} is not a model directory: {ConfigFile} is missing", path);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var root = doc.RootElement;
            var config = new GptConfig(
                root.GetProperty("vocab_size").GetInt32(), root.GetProperty("n_layer").GetInt32(), root.GetProperty("n_head").GetInt32(),
                root.GetProperty("n_embd").GetInt32(), root.GetProperty("block_size").GetInt32(),
                root.TryGetProperty("layer_norm_epsilon", out var eps) ? (float)eps.GetDouble() : 1e-5f)
            {
                FactoredRanks = FactoredRanksOf(root),
            };
            config.Validate();
            var tokenizer = new CharTokenizer(root.GetProperty("vocabulary").GetString() ?? "");
            if (tokenizer.Size != config.Vocabulary)
                throw new InvalidDataException($"{path}: vocabulary has {tokenizer.Size} characters but vocab_size is {config.Vocabulary}");
            return (config, tokenizer);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or ArgumentException or FormatException)
        {
            throw new InvalidDataException($"{path}: not a valid model configuration: {e.Message}", e);
        }
    }

    /// <summary>Loads a model directory for inference (or, with <paramref name="training"/>, for LoRA fine-tuning with the base frozen).</summary>
    public static (GptModel Model, CharTokenizer Tokenizer) Load(Backend backend, string directory, int maxBatch, bool training = false)
    {
        var (config, tokenizer) = ReadConfig(directory);
        var model = new GptModel(backend, config, maxBatch, training, trainParameters: false);
        try
        {
            LoadParameters(model.Parameters, Path.Combine(directory, ModelFile));
        }
        catch
        {
            model.Dispose();
            throw;
        }
        return (model, tokenizer);
    }

    private static Dictionary<string, int> FactoredRanksOf(JsonElement root)
    {
        var ranks = new Dictionary<string, int>(StringComparer.Ordinal);
        if (root.TryGetProperty("factored_ranks", out var factored))
            foreach (var layer in factored.EnumerateObject()) ranks[layer.Name] = layer.Value.GetInt32();
        return ranks;
    }

    private static byte[] ConfigJson(GptConfig config, CharTokenizer tokenizer)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("model_type", ModelType);
            json.WriteNumber("vocab_size", config.Vocabulary);
            json.WriteNumber("n_layer", config.Layers);
            json.WriteNumber("n_head", config.Heads);
            json.WriteNumber("n_embd", config.Channels);
            json.WriteNumber("block_size", config.BlockSize);
            json.WriteNumber("layer_norm_epsilon", config.LayerNormEpsilon);
            json.WriteString("tokenizer", "char");
            json.WriteString("vocabulary", tokenizer.Vocabulary);
            if (config.FactoredRanks.Count > 0)
            {
                json.WriteStartObject("factored_ranks");
                foreach (var (layer, rank) in config.FactoredRanks) json.WriteNumber(layer, rank);
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        return stream.ToArray();
    }
}

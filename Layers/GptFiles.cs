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

    // config.json's "tokenizer": the character vocabulary in "vocabulary", GPT-2's files, none; else the file's name.
    private const string CharKind = "char", Gpt2BpeKind = "gpt2-bpe", NoTokenizer = "none";

    // config.json's "module_names": how PEFT adapters of this model name its modules (absent: ours).
    private static readonly Dictionary<string, ModelLayout> NameLayouts = new(StringComparer.Ordinal)
    {
        ["gpt2"] = ModelLayout.Gpt2, ["llama"] = ModelLayout.Llama,
    };

    /// <summary>
    /// Writes the weights and the configuration of <paramref name="model"/> into <paramref name="directory"/>, with its
    /// tokenizer (the character vocabulary inside config.json; GPT-2's vocab.json and merges.txt or a Hugging Face
    /// tokenizer.json beside it; none: token ids only) and the module names its PEFT adapters use
    /// (<paramref name="names"/>: a model compressed from a Hugging Face checkpoint keeps taking that checkpoint's adapters).
    /// </summary>
    public static void Save(GptModel model, ITokenizer? tokenizer, string directory, ModelLayout names = ModelLayout.LoraRuntime)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!Enum.IsDefined(names)) throw new ArgumentOutOfRangeException(nameof(names), names, $"names: expected one of {string.Join(", ", Enum.GetNames<ModelLayout>())}");
        string kind = tokenizer switch
        {
            null => NoTokenizer,
            CharTokenizer => CharKind,
            BpeTokenizer => Gpt2BpeKind,
            HuggingFaceTokenizer => HuggingFaceTokenizer.FileName,
            _ => throw new ArgumentException($"tokenizer: a {tokenizer.GetType().Name} cannot be saved in a model directory", nameof(tokenizer)),
        };
        AtomicDirectory.Write(directory, folder =>
        {
            SaveParameters(model.Parameters, Path.Combine(folder, ModelFile), "lora-runtime-gpt");
            switch (tokenizer)
            {
                case BpeTokenizer bpe: bpe.Save(folder); break;
                case HuggingFaceTokenizer hf: hf.Save(folder); break;
            }
            // config.json last: in an existing folder, a directory is a model only once everything it names is in place.
            AtomicFile.WriteAllBytes(Path.Combine(folder, ConfigFile), ConfigJson(model.Config, kind, (tokenizer as CharTokenizer)?.Vocabulary, names));
        });
    }

    /// <summary>Writes every parameter of <paramref name="parameters"/> to a safetensors file.</summary>
    public static void SaveParameters(ParameterSet parameters, string path, string format)
    {
        var writer = new SafetensorsWriter();
        foreach (var p in parameters.Parameters) writer.Add(p.Name, p.Value);
        writer.AddMetadata("format", format);
        writer.Save(path);
    }

    /// <summary>Reads every parameter (and stored weight) of <paramref name="parameters"/> from a safetensors file (names and shapes must match).</summary>
    public static void LoadParameters(ParameterSet parameters, string path)
    {
        using var reader = SafetensorsReader.Open(path);
        float[] buffer = [];
        foreach (var p in parameters.Parameters)
        {
            if (!reader.TryGetEntry(p.Name, out _))
                throw new InvalidDataException($"{path}: no tensor '{p.Name}' (expected {p.Shape})");
            FiniteWeights.LoadInto(reader, p.Name, p.Value, path);
        }
        foreach (var (name, matrix) in parameters.Stored)
        {
            if (!reader.TryGetEntry(name, out var entry))
                throw new InvalidDataException($"{path}: no tensor '{name}' (expected [{matrix.Rows}, {matrix.Columns}])");
            if (!entry.Shape.SequenceEqual([(long)matrix.Rows, matrix.Columns]) || entry.DType is not (SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16))
                throw new InvalidDataException(
                    $"{path}: tensor '{name}' is {entry.DType} [{string.Join(", ", entry.Shape)}]; expected a float [{matrix.Rows}, {matrix.Columns}]");
            CheckpointRows.Load(reader, name, parameters, name, 0, matrix.Rows, matrix.Columns, ref buffer);
        }
    }

    /// <summary>Each weight's format under <paramref name="storage"/>: the file's type of the tensor of that name where kept as stored.</summary>
    private static Func<string, int, WeightFormat>? StorageOf(string path, WeightStorage? storage)
    {
        if (storage is null || storage == WeightStorage.Float32) return null;
        var types = new Dictionary<string, WeightFormat>(StringComparer.Ordinal);
        if (File.Exists(path))
        {
            using var reader = SafetensorsReader.Open(path);
            foreach (var entry in reader.Entries) types[entry.Name] = CheckpointRows.FormatOf(entry.DType);
        }
        return storage.FormatsFor(name => types.TryGetValue(name, out var stored) ? stored : WeightFormat.F32);
    }

    /// <summary>The architecture, tokenizer (null: token ids only) and adapter module names of a model directory.</summary>
    public static (GptConfig Config, ITokenizer? Tokenizer, ModelLayout Names) ReadConfig(string directory)
    {
        string path = Path.Combine(directory, ConfigFile);
        if (!File.Exists(path))
            throw new FileNotFoundException($"{directory} is not a model directory: {ConfigFile} is missing", path);
        try
        {
            using var doc = JsonDocument.Parse(InputFiles.ReadAllBytes(path));
            var root = doc.RootElement;
            var config = new GptConfig(
                root.GetProperty("vocab_size").GetInt32(), root.GetProperty("n_layer").GetInt32(), root.GetProperty("n_head").GetInt32(),
                root.GetProperty("n_embd").GetInt32(), root.GetProperty("block_size").GetInt32(),
                root.TryGetProperty("layer_norm_epsilon", out var eps) ? (float)eps.GetDouble() : 1e-5f)
            {
                FactoredRanks = FactoredRanksOf(root),
            };
            if (root.TryGetProperty("architecture", out var architecture)) config = ReadArchitecture(config, architecture);
            config.Validate();
            var names = ModelLayout.LoraRuntime;
            if (root.TryGetProperty("module_names", out var n))
            {
                string name = n.GetString() ?? "";
                if (!NameLayouts.TryGetValue(name, out names))
                    throw new FormatException($"module_names: expected {string.Join(" or ", NameLayouts.Keys)}; got '{name}'");
            }
            var tokenizer = ReadTokenizer(root, directory, path);
            if (tokenizer is CharTokenizer chars && chars.Size != config.Vocabulary)
                throw new InvalidDataException($"{path}: vocabulary has {chars.Size} characters but vocab_size is {config.Vocabulary}");
            if (tokenizer is not null && tokenizer.VocabularySize > config.Vocabulary)
                throw new InvalidDataException($"{path}: the tokenizer has {tokenizer.VocabularySize} tokens but vocab_size is {config.Vocabulary}");
            return (config, tokenizer, names);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or ArgumentException or FormatException)
        {
            throw new InvalidDataException($"{path}: not a valid model configuration: {e.Message}", e);
        }
    }

    private static ITokenizer? ReadTokenizer(JsonElement root, string directory, string path)
    {
        string kind = root.TryGetProperty("tokenizer", out var t) ? t.GetString() ?? "" : CharKind;
        switch (kind)
        {
            case CharKind:
                return new CharTokenizer(root.GetProperty("vocabulary").GetString() ?? "");
            case Gpt2BpeKind:
                return BpeTokenizer.FromDirectory(directory);
            case NoTokenizer:
                return null;
            case HuggingFaceTokenizer.FileName:
                return HuggingFaceTokenizer.FromFile(Path.Combine(directory, HuggingFaceTokenizer.FileName));
            default:
                throw new InvalidDataException(
                    $"{path}: tokenizer: expected {CharKind}, {Gpt2BpeKind}, {HuggingFaceTokenizer.FileName} or {NoTokenizer}; got '{kind}'");
        }
    }

    /// <summary>Loads a model directory for inference (or, with <paramref name="training"/>, for LoRA fine-tuning with the base frozen).</summary>
    public static (GptModel Model, ITokenizer? Tokenizer, ModelLayout Names) Load(Backend backend, string directory, int maxBatch, bool training = false,
        WeightStorage? storage = null)
    {
        var (config, tokenizer, names) = ReadConfig(directory);
        var model = new GptModel(backend, config, maxBatch, training, trainParameters: false, StorageOf(Path.Combine(directory, ModelFile), storage));
        try
        {
            LoadParameters(model.Parameters, Path.Combine(directory, ModelFile));
        }
        catch
        {
            model.Dispose();
            throw;
        }
        return (model, tokenizer, names);
    }

    private static Dictionary<string, int> FactoredRanksOf(JsonElement root)
    {
        var ranks = new Dictionary<string, int>(StringComparer.Ordinal);
        if (root.TryGetProperty("factored_ranks", out var factored))
            foreach (var layer in factored.EnumerateObject()) ranks[layer.Name] = layer.Value.GetInt32();
        return ranks;
    }

    private static byte[] ConfigJson(GptConfig config, string tokenizer, string? vocabulary, ModelLayout names)
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
            json.WriteString("tokenizer", tokenizer);
            if (vocabulary is not null) json.WriteString("vocabulary", vocabulary);
            if (names != ModelLayout.LoraRuntime) json.WriteString("module_names", NameLayouts.First(kv => kv.Value == names).Key);
            if (config.FactoredRanks.Count > 0)
            {
                json.WriteStartObject("factored_ranks");
                foreach (var (layer, rank) in config.FactoredRanks) json.WriteNumber(layer, rank);
                json.WriteEndObject();
            }
            if (!IsGpt2Architecture(config)) WriteArchitecture(json, config);
            json.WriteEndObject();
        }
        return stream.ToArray();
    }

    /// <summary>True when <paramref name="config"/> has GPT-2's options (the defaults): its config.json then needs no "architecture".</summary>
    private static bool IsGpt2Architecture(GptConfig config) =>
        config.Norm == NormKind.LayerNorm && config.Mlp == MlpKind.Gelu && config.IntermediateSize is null && config.KeyValueHeads is null
        && config.HeadSize is null && config.Rotary is null && config.QkvBias && config.OutputBias && config.MlpBias && config.TiedHead && !config.QkNorm;

    /// <summary>The options that make a model other than GPT-2-shaped (a Llama-style one trained here).</summary>
    private static void WriteArchitecture(Utf8JsonWriter json, GptConfig config)
    {
        json.WriteStartObject("architecture");
        json.WriteString("norm", config.Norm == NormKind.RmsNorm ? "rms_norm" : "layer_norm");
        json.WriteString("mlp", config.Mlp == MlpKind.GatedSilu ? "gated_silu" : "gelu");
        json.WriteNumber("intermediate_size", config.Hidden);
        json.WriteNumber("num_key_value_heads", config.KvHeads);
        json.WriteNumber("head_dim", config.HeadDim);
        json.WriteBoolean("qkv_bias", config.QkvBias);
        json.WriteBoolean("output_bias", config.OutputBias);
        json.WriteBoolean("mlp_bias", config.MlpBias);
        json.WriteBoolean("tie_word_embeddings", config.TiedHead);
        json.WriteBoolean("qk_norm", config.QkNorm);
        if (config.Rotary is { } r)
        {
            json.WriteStartObject("rotary");
            json.WriteNumber("theta", r.Theta);
            json.WriteNumber("partial_factor", r.PartialFactor);
            json.WriteString("scaling", r.Scaling.ToString().ToLowerInvariant());
            json.WriteNumber("factor", r.Factor);
            json.WriteNumber("original_max_positions", r.OriginalMaxPositions);
            json.WriteNumber("low_freq_factor", r.LowFrequencyFactor);
            json.WriteNumber("high_freq_factor", r.HighFrequencyFactor);
            json.WriteNumber("beta_fast", r.BetaFast);
            json.WriteNumber("beta_slow", r.BetaSlow);
            if (r.AttentionFactor is { } a) json.WriteNumber("attention_factor", a);
            if (r.FrequencyFactors is { } factors)
            {
                json.WriteStartArray("frequency_factors");
                foreach (double f in factors) json.WriteNumberValue(f);
                json.WriteEndArray();
            }
            json.WriteEndObject();
        }
        json.WriteEndObject();
    }

    private static GptConfig ReadArchitecture(GptConfig config, JsonElement a)
    {
        RotaryOptions? rotary = null;
        if (a.TryGetProperty("rotary", out var r) && r.ValueKind == JsonValueKind.Object)
            rotary = new RotaryOptions
            {
                Theta = r.GetProperty("theta").GetDouble(), PartialFactor = r.GetProperty("partial_factor").GetDouble(),
                Scaling = Enum.Parse<RopeScaling>(r.GetProperty("scaling").GetString() ?? "", ignoreCase: true),
                Factor = r.GetProperty("factor").GetDouble(), OriginalMaxPositions = r.GetProperty("original_max_positions").GetInt32(),
                LowFrequencyFactor = r.GetProperty("low_freq_factor").GetDouble(), HighFrequencyFactor = r.GetProperty("high_freq_factor").GetDouble(),
                BetaFast = r.GetProperty("beta_fast").GetDouble(), BetaSlow = r.GetProperty("beta_slow").GetDouble(),
                AttentionFactor = r.TryGetProperty("attention_factor", out var af) ? af.GetDouble() : null,
                FrequencyFactors = r.TryGetProperty("frequency_factors", out var ff) && ff.ValueKind == JsonValueKind.Array
                    ? ff.EnumerateArray().Select(e => e.GetDouble()).ToArray() : null,
            };
        string norm = a.GetProperty("norm").GetString() ?? "", mlp = a.GetProperty("mlp").GetString() ?? "";
        return config with
        {
            Norm = norm switch { "rms_norm" => NormKind.RmsNorm, "layer_norm" => NormKind.LayerNorm, _ => throw new FormatException($"architecture.norm: expected rms_norm or layer_norm; got '{norm}'") },
            Mlp = mlp switch { "gated_silu" => MlpKind.GatedSilu, "gelu" => MlpKind.Gelu, _ => throw new FormatException($"architecture.mlp: expected gated_silu or gelu; got '{mlp}'") },
            IntermediateSize = a.GetProperty("intermediate_size").GetInt32(),
            KeyValueHeads = a.GetProperty("num_key_value_heads").GetInt32(),
            HeadSize = a.GetProperty("head_dim").GetInt32(),
            QkvBias = a.GetProperty("qkv_bias").GetBoolean(),
            OutputBias = a.GetProperty("output_bias").GetBoolean(),
            MlpBias = a.GetProperty("mlp_bias").GetBoolean(),
            TiedHead = a.GetProperty("tie_word_embeddings").GetBoolean(),
            QkNorm = a.TryGetProperty("qk_norm", out var qk) && qk.GetBoolean(),
            Rotary = rotary,
        };
    }
}

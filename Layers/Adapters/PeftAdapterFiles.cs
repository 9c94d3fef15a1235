using System.Text.Json;
using LoraRuntime.IO;

namespace LoraRuntime.Layers.Adapters;

/// <summary>
/// An adapter directory in PEFT's layout: <c>adapter_config.json</c> (peft_type LORA, r, lora_alpha, target_modules, …)
/// and <c>adapter_model.safetensors</c> with keys <c>base_model.model.&lt;module path&gt;.lora_A.weight</c> [R, in],
/// <c>.lora_B.weight</c> [out, R] and, for DoRA, <c>.lora_magnitude_vector</c> [out].
/// </summary>
public static class PeftAdapterFiles
{
    /// <summary>The configuration's file name.</summary>
    public const string ConfigFile = "adapter_config.json";

    /// <summary>The weights' file name.</summary>
    public const string WeightsFile = "adapter_model.safetensors";

    private const string Prefix = "base_model.model.";

    /// <summary>Writes <paramref name="adapter"/> (created from <paramref name="config"/>) into <paramref name="directory"/>, each file atomically.</summary>
    public static void Save(LoraAdapter adapter, LoraConfig config, string directory, string baseModel)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        ArgumentNullException.ThrowIfNull(config);
        Directory.CreateDirectory(directory);
        var writer = new SafetensorsWriter();
        foreach (var w in adapter.Modules)
        {
            writer.Add(Prefix + w.Module.Path + ".lora_A.weight", w.A.Value);
            writer.Add(Prefix + w.Module.Path + ".lora_B.weight", w.B.Value);
            if (w.Magnitude is not null) writer.Add(Prefix + w.Module.Path + ".lora_magnitude_vector", w.Magnitude.Value);
        }
        writer.AddMetadata("format", "pt");
        writer.Save(Path.Combine(directory, WeightsFile));
        AtomicFile.WriteAllBytes(Path.Combine(directory, ConfigFile), ConfigJson(config, baseModel));
    }

    /// <summary>The <see cref="LoraConfig"/> of an adapter directory.</summary>
    public static LoraConfig ReadConfig(string directory)
    {
        string path = Path.Combine(directory, ConfigFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"{directory} is not a PEFT adapter: {ConfigFile} is missing", path);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var root = doc.RootElement;
            string type = root.TryGetProperty("peft_type", out var t) ? t.GetString() ?? "" : "";
            if (type != "LORA") throw new InvalidDataException($"{path}: peft_type is '{type}', expected LORA");
            var targets = root.GetProperty("target_modules");
            var names = targets.ValueKind == JsonValueKind.String ? [targets.GetString()!] : targets.EnumerateArray().Select(e => e.GetString()!).ToList();
            return new LoraConfig
            {
                TargetModules = names,
                Defaults = new LoraOptions
                {
                    Rank = root.GetProperty("r").GetInt32(),
                    Alpha = (float)root.GetProperty("lora_alpha").GetDouble(),
                    Dropout = root.TryGetProperty("lora_dropout", out var d) ? (float)d.GetDouble() : 0f,
                    UseRsLora = root.TryGetProperty("use_rslora", out var rs) && rs.GetBoolean(),
                    UseDora = root.TryGetProperty("use_dora", out var dora) && dora.GetBoolean(),
                },
                RankPattern = Pattern(root, "rank_pattern", e => e.GetInt32()),
                AlphaPattern = Pattern(root, "alpha_pattern", e => (float)e.GetDouble()),
            };
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{path}: not a valid PEFT LoRA configuration: {e.Message}", e);
        }
    }

    /// <summary>
    /// Adds the adapter stored in <paramref name="directory"/> to <paramref name="model"/> as <paramref name="name"/> and
    /// loads its weights; a key or shape with no place in the model is refused, naming it.
    /// </summary>
    public static LoraAdapter Load(LoraModel model, string name, string directory)
    {
        var config = ReadConfig(directory);
        var adapter = model.AddAdapter(name, config);
        string path = Path.Combine(directory, WeightsFile);
        using var reader = SafetensorsReader.Open(path);
        var expected = new HashSet<string>(StringComparer.Ordinal);
        foreach (var w in adapter.Modules)
        {
            Load(reader, path, Prefix + w.Module.Path + ".lora_A.weight", w.A, expected);
            Load(reader, path, Prefix + w.Module.Path + ".lora_B.weight", w.B, expected);
            if (w.Magnitude is not null) Load(reader, path, Prefix + w.Module.Path + ".lora_magnitude_vector", w.Magnitude, expected);
        }
        foreach (var entry in reader.Entries)
            if (!expected.Contains(entry.Name))
                throw new InvalidDataException($"{path}: tensor '{entry.Name}' has no place in the model (the configuration targets {string.Join(", ", config.TargetModules)})");
        foreach (var w in adapter.Modules) w.Dora?.Refresh();
        return adapter;
    }

    private static void Load(SafetensorsReader reader, string path, string key, Parameter parameter, HashSet<string> expected)
    {
        expected.Add(key);
        if (!reader.TryGetEntry(key, out _)) throw new InvalidDataException($"{path}: missing tensor '{key}' (expected {parameter.Shape})");
        reader.LoadInto(key, parameter.Value);
    }

    private static Dictionary<string, T> Pattern<T>(JsonElement root, string property, Func<JsonElement, T> read)
    {
        var result = new Dictionary<string, T>(StringComparer.Ordinal);
        if (root.TryGetProperty(property, out var p) && p.ValueKind == JsonValueKind.Object)
            foreach (var kv in p.EnumerateObject()) result[kv.Name] = read(kv.Value);
        return result;
    }

    internal static byte[] ConfigJson(LoraConfig config, string baseModel)
    {
        var o = config.Defaults;
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("peft_type", "LORA");
            json.WriteString("task_type", "CAUSAL_LM");
            json.WriteString("base_model_name_or_path", baseModel);
            json.WriteNumber("r", o.Rank);
            json.WriteNumber("lora_alpha", o.Alpha);
            json.WriteNumber("lora_dropout", o.Dropout);
            json.WriteStartArray("target_modules");
            foreach (var t in config.TargetModules) json.WriteStringValue(t);
            json.WriteEndArray();
            json.WriteBoolean("use_rslora", o.UseRsLora);
            json.WriteBoolean("use_dora", o.UseDora);
            json.WriteBoolean("fan_in_fan_out", false);
            json.WriteString("bias", "none");
            json.WriteNull("modules_to_save");
            json.WriteString("init_lora_weights", o.Init switch
            {
                LoraInit.Gaussian => "gaussian", LoraInit.Random => "false", LoraInit.Pissa => "pissa",
                LoraInit.PissaRandomized => $"pissa_niter_{o.PissaIterations}", LoraInit.Olora => "olora", _ => "true",
            });
            json.WriteStartObject("rank_pattern");
            foreach (var kv in config.RankPattern) json.WriteNumber(kv.Key, kv.Value);
            json.WriteEndObject();
            json.WriteStartObject("alpha_pattern");
            foreach (var kv in config.AlphaPattern) json.WriteNumber(kv.Key, kv.Value);
            json.WriteEndObject();
            json.WriteEndObject();
        }
        return stream.ToArray();
    }
}

using System.Text.Json;
using LoraRuntime.IO;

namespace LoraRuntime.Layers.Adapters;

/// <summary>
/// An adapter directory in PEFT's layout: <c>adapter_config.json</c> (every field, see <see cref="PeftAdapterConfig"/>)
/// and <c>adapter_model.safetensors</c> with keys <c>base_model.model.&lt;module name&gt;.lora_A.weight</c> [R, in],
/// <c>.lora_B.weight</c> [out, R] and, for DoRA, <c>.lora_magnitude_vector</c> [out]. Module names follow the base
/// model's layout (<see cref="PeftTargets.ModuleName"/>): ours ("blocks.0.attn.qkv"), or GPT-2's
/// ("transformer.h.0.attn.c_attn", one adapter over the fused QKV; attn.c_proj is our o, mlp.c_fc fc, mlp.c_proj
/// proj). PEFT stores lora_A [R, in] and lora_B [out, R] for GPT-2's Conv1D too: fan_in_fan_out concerns only the
/// base weight, so the adapter's tensors load as they are.
/// </summary>
internal static class PeftAdapterFiles
{
    /// <summary>The configuration's file name.</summary>
    public const string ConfigFile = "adapter_config.json";

    /// <summary>The weights' file name.</summary>
    public const string WeightsFile = "adapter_model.safetensors";

    private const string Prefix = "base_model.model.";

    /// <summary>
    /// Writes <paramref name="adapter"/> (created from <paramref name="config"/>) into <paramref name="directory"/>, each
    /// file atomically, with the module names of <paramref name="layout"/>.
    /// </summary>
    public static void Save(LoraAdapter adapter, LoraConfig config, string directory, string baseModel, ModelLayout layout = ModelLayout.LoraRuntime)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        ArgumentNullException.ThrowIfNull(config);
        var peft = PeftTargets.ForAdapter(adapter, config, layout, baseModel);
        var writer = new SafetensorsWriter();
        foreach (var w in adapter.Modules)
        {
            string key = Prefix + PeftTargets.ModuleName(layout, w.Module.Path);
            writer.Add(key + ".lora_A.weight", w.A.Value);
            writer.Add(key + ".lora_B.weight", w.B.Value);
            if (w.Magnitude is not null) writer.Add(key + ".lora_magnitude_vector", w.Magnitude.Value);
        }
        writer.AddMetadata("format", "pt");
        AtomicDirectory.Write(directory, folder =>
        {
            writer.Save(Path.Combine(folder, WeightsFile));
            SaveConfig(peft, folder);
        });
    }

    /// <summary>Writes <paramref name="config"/> as the adapter_config.json of <paramref name="directory"/>, atomically.</summary>
    public static void SaveConfig(PeftAdapterConfig config, string directory)
    {
        ArgumentNullException.ThrowIfNull(config);
        Directory.CreateDirectory(directory);
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true })) config.Write(json);
        AtomicFile.WriteAllBytes(Path.Combine(directory, ConfigFile), stream.ToArray());
    }

    /// <summary>Every field of the adapter_config.json of <paramref name="directory"/>.</summary>
    public static PeftAdapterConfig ReadPeftConfig(string directory)
    {
        string path = Path.Combine(directory, ConfigFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"{directory} is not a PEFT adapter: {ConfigFile} is missing", path);
        try
        {
            using var doc = JsonDocument.Parse(InputFiles.ReadAllBytes(path));
            return PeftAdapterConfig.Parse(doc.RootElement, path);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{path}: not a valid PEFT LoRA configuration: {e.Message}", e);
        }
    }

    /// <summary>
    /// The <see cref="LoraConfig"/> of an adapter directory made for our module names. A target_modules regular
    /// expression needs the model's modules: <see cref="Load"/> resolves it.
    /// </summary>
    public static LoraConfig ReadConfig(string directory)
    {
        var peft = ReadPeftConfig(directory);
        if (peft.TargetModulesPattern is not null || peft.ExcludeModules is not null || peft.ExcludeModulesPattern is not null)
            throw new InvalidDataException(
                $"{Path.Combine(directory, ConfigFile)}: target_modules '{peft.TargetModulesPattern}' / exclude_modules select modules by pattern; they are resolved against a model by PeftAdapterFiles.Load");
        return new LoraConfig
        {
            TargetModules = peft.TargetModules!, Defaults = peft.Defaults, RankPattern = peft.RankPattern, AlphaPattern = peft.AlphaPattern,
        };
    }

    /// <summary>
    /// Adds the adapter stored in <paramref name="directory"/> to <paramref name="model"/> as <paramref name="name"/> and
    /// loads its weights, module names read as <paramref name="layout"/> names them; a key or shape with no place in
    /// the model is refused, naming it and the shapes.
    /// </summary>
    public static LoraAdapter Load(LoraModel model, string name, string directory, ModelLayout layout = ModelLayout.LoraRuntime)
    {
        ArgumentNullException.ThrowIfNull(model);
        var peft = ReadPeftConfig(directory);
        string configPath = Path.Combine(directory, ConfigFile), path = Path.Combine(directory, WeightsFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"{directory} is not a PEFT adapter: {WeightsFile} is missing", path);
        using var reader = SafetensorsReader.Open(path);
        var (config, keyOf) = Resolve(peft, reader, model.Host.LinearTargets, layout, configPath);
        // Every key and shape is checked before the adapter is created, so a bad file changes nothing (PiSSA and
        // OLoRA rewrite the base weights when an adapter is created).
        var expected = new Dictionary<string, Shape>(StringComparer.Ordinal);
        foreach (var target in model.Host.LinearTargets.Where(config.Targets))
        {
            string key = keyOf(target.Path);
            var options = config.OptionsFor(target.Path);
            Expect(reader, path, expected, key + ".lora_A.weight", new Shape(options.Rank, target.Linear.InFeatures), "lora_A [R, in]");
            Expect(reader, path, expected, key + ".lora_B.weight", new Shape(target.OutputFeatures, options.Rank), "lora_B [out, R]");
            if (options.UseDora) Expect(reader, path, expected, key + ".lora_magnitude_vector", new Shape(target.OutputFeatures), "the DoRA magnitude [out]");
        }
        foreach (var entry in reader.Entries)
            if (!expected.ContainsKey(entry.Name))
                throw new InvalidDataException(
                    $"{path}: tensor '{entry.Name}' [{string.Join(", ", entry.Shape)}] has no place in the model (the configuration targets {Describe(peft)})");
        LoraAdapter adapter;
        try
        {
            adapter = model.AddAdapter(name, config);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{configPath}: {e.Message}", e);
        }
        foreach (var w in adapter.Modules)
        {
            string key = keyOf(w.Module.Path);
            FiniteWeights.LoadInto(reader, key + ".lora_A.weight", w.A.Value, reader.Path);
            FiniteWeights.LoadInto(reader, key + ".lora_B.weight", w.B.Value, reader.Path);
            if (w.Magnitude is not null) FiniteWeights.LoadInto(reader, key + ".lora_magnitude_vector", w.Magnitude.Value, reader.Path);
        }
        foreach (var w in adapter.Modules) w.Dora?.Refresh();
        return adapter;
    }

    /// <summary>
    /// The configuration <paramref name="peft"/> of the adapter in <paramref name="reader"/> resolved in our terms against
    /// <paramref name="targets"/> (<see cref="PeftTargets.Resolve"/>), and the key prefix of each module path in the
    /// file ("base_model.model.transformer.h.0.attn.c_attn"): what <see cref="Load"/> and serving's reader share.
    /// </summary>
    internal static (LoraConfig Config, Func<string, string> KeyOf) Resolve(PeftAdapterConfig peft, SafetensorsReader reader,
        IEnumerable<LinearTarget> targets, ModelLayout layout, string configPath)
    {
        // GPT2LMHeadModel's adapters name the body "transformer."; one made on a bare GPT2Model does not.
        bool bare = layout == ModelLayout.Gpt2 && !reader.Entries.Any(e => e.Name.StartsWith(Prefix + Gpt2Checkpoint.TransformerPrefix, StringComparison.Ordinal));
        var config = PeftTargets.Resolve(peft, targets, layout, configPath);
        return (config, path => KeyOf(layout, path, bare));
    }

    private static string KeyOf(ModelLayout layout, string path, bool bare)
    {
        string module = PeftTargets.ModuleName(layout, path)!;
        return Prefix + (bare ? module[Gpt2Checkpoint.TransformerPrefix.Length..] : module);
    }

    private static string Describe(PeftAdapterConfig peft) =>
        peft.TargetModulesPattern is { } p ? $"'{p}'" : string.Join(", ", peft.TargetModules ?? []);

    private static void Expect(SafetensorsReader reader, string path, Dictionary<string, Shape> expected, string key, Shape shape, string role)
    {
        expected[key] = shape;
        if (!reader.TryGetEntry(key, out var entry)) throw new InvalidDataException($"{path}: missing tensor '{key}' (expected {role} = {shape})");
        bool same = entry.Shape.Length == shape.Rank;
        for (int i = 0; same && i < shape.Rank; i++) same = entry.Shape[i] == shape[i];
        if (!same)
            throw new InvalidDataException($"{path}: tensor '{key}' has shape [{string.Join(", ", entry.Shape)}]; expected {role} = {shape}");
    }
}

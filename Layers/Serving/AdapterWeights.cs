using LoraRuntime.IO;
using LoraRuntime.Layers.Adapters;

namespace LoraRuntime.Layers.Serving;

/// <summary>One module of an adapter as read: A [R, in] and B [out, R] in float32 with its scale s.</summary>
/// <param name="Path">The module path ("blocks.0.attn.q").</param>
/// <param name="Rank">R.</param>
/// <param name="A">A [R, in], row-major.</param>
/// <param name="B">B [out, R], row-major.</param>
/// <param name="Scale">s = α/R (α/√R with rsLoRA).</param>
internal sealed record AdapterModuleWeights(string Path, int Rank, float[] A, float[] B, float Scale);

/// <summary>
/// Reads an adapter's modules for serving: from a PEFT directory (<see cref="PeftAdapterFiles"/>'s layout, configuration
/// and module names, ours or GPT-2's as the served model's <see cref="ServingLayout.ModelLayout"/> says) or from a
/// <see cref="LoraAdapter"/> in memory. Serving runs plain LoRA at inference: DoRA adapters are refused and dropout does
/// not apply.
/// </summary>
internal static class AdapterWeights
{
    /// <summary>
    /// The modules of the PEFT adapter in <paramref name="directory"/> for a model of <paramref name="layout"/>; a
    /// missing or misshapen tensor, a tensor with no place in the model, or DoRA is an <see cref="InvalidDataException"/>
    /// naming the file and tensor.
    /// </summary>
    public static IReadOnlyList<AdapterModuleWeights> ReadPeft(ServingLayout layout, string directory)
    {
        ArgumentNullException.ThrowIfNull(layout);
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"path: adapter directory '{directory}' does not exist");
        var peft = PeftAdapterFiles.ReadPeftConfig(directory);
        string configPath = Path.Combine(directory, PeftAdapterFiles.ConfigFile), file = Path.Combine(directory, PeftAdapterFiles.WeightsFile);
        if (!File.Exists(file)) throw new FileNotFoundException($"{directory} is not a PEFT adapter: {PeftAdapterFiles.WeightsFile} is missing", file);
        using var reader = SafetensorsReader.Open(file);
        var (config, keyOf) = PeftAdapterFiles.Resolve(peft, reader, layout.Targets, layout.ModelLayout, configPath);
        var selected = layout.Targets.Where(config.Targets).OrderBy(t => t.Path, StringComparer.Ordinal).ToList();
        var modules = new List<AdapterModuleWeights>(selected.Count);
        var expected = new HashSet<string>(StringComparer.Ordinal);
        foreach (var target in selected)
        {
            var options = config.OptionsFor(target.Path);
            if (options.UseDora)
                throw new InvalidDataException($"{directory}: {target.Path} uses DoRA; serving runs plain LoRA (merge a DoRA adapter first)");
            int rank = options.Rank, inFeatures = target.Linear.InFeatures;
            string key = keyOf(target.Path), keyA = key + ".lora_A.weight", keyB = key + ".lora_B.weight";
            var a = Read(reader, file, keyA, rank, inFeatures);
            var b = Read(reader, file, keyB, target.OutputFeatures, rank);
            expected.Add(keyA);
            expected.Add(keyB);
            modules.Add(new AdapterModuleWeights(target.Path, rank, a, b, options.Scale));
        }
        foreach (var entry in reader.Entries)
            if (!expected.Contains(entry.Name))
                throw new InvalidDataException($"{file}: tensor '{entry.Name}' has no place in the model (the configuration targets {string.Join(", ", peft.TargetModules ?? [peft.TargetModulesPattern ?? ""])})");
        return modules;
    }

    /// <summary>The modules of an adapter created on (a copy of) the served model.</summary>
    public static IReadOnlyList<AdapterModuleWeights> FromAdapter(LoraAdapter adapter)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        var modules = new List<AdapterModuleWeights>(adapter.Modules.Count);
        foreach (var w in adapter.Modules)
        {
            if (w.Dora is not null) throw new ArgumentException($"adapter: {w.Module.Path} uses DoRA; serving runs plain LoRA", nameof(adapter));
            modules.Add(new AdapterModuleWeights(w.Module.Path, w.Rank, w.A.Value.ToArray(), w.B.Value.ToArray(), w.Scale));
        }
        return modules;
    }

    private static float[] Read(SafetensorsReader reader, string file, string key, int rows, int cols)
    {
        if (!reader.TryGetEntry(key, out var entry)) throw new InvalidDataException($"{file}: missing tensor '{key}' (expected [{rows}, {cols}])");
        if (entry.Shape.Length != 2 || entry.Shape[0] != rows || entry.Shape[1] != cols)
            throw new InvalidDataException($"{file}: tensor '{key}' is [{string.Join(", ", entry.Shape)}]; expected [{rows}, {cols}]");
        var values = new float[rows * cols];
        reader.ReadFloat32(key, values);
        FiniteWeights.Require(values, key, file);
        return values;
    }
}

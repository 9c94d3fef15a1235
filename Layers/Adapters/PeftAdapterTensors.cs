using System.Text.Json;
using LoraRuntime.IO;

namespace LoraRuntime.Layers.Adapters;

/// <summary>One module of an adapter read without a model: A [R, in] and B [out, R], row-major.</summary>
/// <param name="Path">The module path ("blocks.0.attn.q").</param>
/// <param name="Rank">R.</param>
/// <param name="InFeatures">in.</param>
/// <param name="OutFeatures">out.</param>
/// <param name="A">lora_A.weight [R, in].</param>
/// <param name="B">lora_B.weight [out, R].</param>
internal sealed record AdapterModuleTensors(string Path, int Rank, int InFeatures, int OutFeatures, float[] A, float[] B);

/// <summary>A PEFT adapter directory as plain tensors: its config, its base model's name and each module's A and B.</summary>
/// <param name="Config">The adapter's configuration.</param>
/// <param name="BaseModel">base_model_name_or_path.</param>
/// <param name="Modules">The modules, in file order.</param>
internal sealed record AdapterTensors(LoraConfig Config, string BaseModel, IReadOnlyList<AdapterModuleTensors> Modules);

/// <summary>
/// Reads and writes PEFT adapter directories (the layout of <see cref="PeftAdapterFiles"/>) without a model, for the
/// tools that work on the adapters alone (<c>lora combine</c>). DoRA magnitudes are not read: such adapters are refused.
/// </summary>
internal static class PeftAdapterTensors
{
    private const string Prefix = "base_model.model.", AKey = ".lora_A.weight", BKey = ".lora_B.weight";

    /// <summary>Reads the adapter in <paramref name="directory"/>; every tensor must be a module's A or B of matching rank.</summary>
    public static AdapterTensors Read(string directory)
    {
        var config = PeftAdapterFiles.ReadConfig(directory);
        string configPath = Path.Combine(directory, PeftAdapterFiles.ConfigFile), path = Path.Combine(directory, PeftAdapterFiles.WeightsFile);
        string baseModel;
        using (var doc = JsonDocument.Parse(InputFiles.ReadAllBytes(configPath)))
            baseModel = doc.RootElement.TryGetProperty("base_model_name_or_path", out var b) && b.ValueKind == JsonValueKind.String ? b.GetString()! : "";
        if (!File.Exists(path)) throw new FileNotFoundException($"{directory} is not a PEFT adapter: {PeftAdapterFiles.WeightsFile} is missing", path);
        using var reader = SafetensorsReader.Open(path);
        var modules = new List<AdapterModuleTensors>();
        foreach (var entry in reader.Entries)
        {
            if (entry.Name.EndsWith(BKey, StringComparison.Ordinal)) continue;
            if (!entry.Name.StartsWith(Prefix, StringComparison.Ordinal) || !entry.Name.EndsWith(AKey, StringComparison.Ordinal))
                throw new InvalidDataException($"{path}: tensor '{entry.Name}' is not a LoRA A or B matrix (DoRA and other variants are not supported here)");
            string module = entry.Name[Prefix.Length..^AKey.Length], bName = Prefix + module + BKey;
            if (!reader.TryGetEntry(bName, out var bEntry)) throw new InvalidDataException($"{path}: '{entry.Name}' has no matching '{bName}'");
            if (entry.Shape.Length != 2 || bEntry.Shape.Length != 2 || entry.Shape[0] != bEntry.Shape[1])
                throw new InvalidDataException(
                    $"{path}: {module}: expected A [R, in] and B [out, R] with the same R; got A [{string.Join(", ", entry.Shape)}] and B [{string.Join(", ", bEntry.Shape)}]");
            int rank = (int)entry.Shape[0], inFeatures = (int)entry.Shape[1], outFeatures = (int)bEntry.Shape[0];
            var a = new float[rank * inFeatures];
            var bValues = new float[outFeatures * rank];
            reader.ReadFloat32(entry.Name, a);
            reader.ReadFloat32(bName, bValues);
            FiniteWeights.Require(a, entry.Name, path);
            FiniteWeights.Require(bValues, bName, path);
            modules.Add(new AdapterModuleTensors(module, rank, inFeatures, outFeatures, a, bValues));
        }
        foreach (var entry in reader.Entries)
            if (entry.Name.EndsWith(BKey, StringComparison.Ordinal) && !reader.TryGetEntry(entry.Name[..^BKey.Length] + AKey, out _))
                throw new InvalidDataException($"{path}: '{entry.Name}' has no matching lora_A");
        if (modules.Count == 0) throw new InvalidDataException($"{path}: the adapter holds no LoRA module");
        return new AdapterTensors(config, baseModel, modules);
    }

    /// <summary>Writes <paramref name="adapter"/> into <paramref name="directory"/>, each file atomically.</summary>
    public static void Write(AdapterTensors adapter, string directory)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        var writer = new SafetensorsWriter();
        foreach (var m in adapter.Modules)
        {
            writer.Add(Prefix + m.Path + AKey, m.A, m.Rank, m.InFeatures);
            writer.Add(Prefix + m.Path + BKey, m.B, m.OutFeatures, m.Rank);
        }
        writer.AddMetadata("format", "pt");
        AtomicDirectory.Write(directory, folder =>
        {
            writer.Save(Path.Combine(folder, PeftAdapterFiles.WeightsFile));
            PeftAdapterFiles.SaveConfig(PeftTargets.ForConfig(adapter.Config, adapter.BaseModel), folder);
        });
    }
}

using System.Text.Json;
using LoraRuntime.IO;

namespace LoraRuntime.Layers;

/// <summary>
/// A GPT-2 checkpoint in Hugging Face's layout: <c>config.json</c> (see <see cref="Gpt2Config"/>) and
/// <c>model.safetensors</c> with keys wte.weight, wpe.weight, h.N.ln_1.*, h.N.attn.c_attn.*, h.N.attn.c_proj.*,
/// h.N.ln_2.*, h.N.mlp.c_fc.*, h.N.mlp.c_proj.*, ln_f.* — with or without the "transformer." prefix, in F32, F16 or
/// BF16. Conv1D weights are stored [in, out] and transposed into our [out, in]. The causal-mask buffers
/// (attn.bias, attn.masked_bias) are skipped; an lm_head.weight must equal wte.weight (the head is tied). A missing or
/// extra tensor, or a wrong shape, is refused naming the key and both shapes.
/// </summary>
internal static class Gpt2Checkpoint
{
    /// <summary>The prefix GPT2LMHeadModel puts before the body's keys.</summary>
    public const string TransformerPrefix = "transformer.";

    /// <summary>The tied head's key, which GPT2LMHeadModel may store.</summary>
    public const string HeadKey = "lm_head.weight";

    /// <summary>The architecture of a GPT-2 directory.</summary>
    public static GptConfig ReadConfig(string directory)
    {
        string path = Path.Combine(directory, GptFiles.ConfigFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"{directory} is not a model directory: {GptFiles.ConfigFile} is missing", path);
        try
        {
            using var doc = JsonDocument.Parse(InputFiles.ReadAllBytes(path));
            return Gpt2Config.Parse(doc.RootElement, path);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{path}: not a valid GPT-2 configuration: {e.Message}", e);
        }
    }

    /// <summary>Loads a GPT-2 directory for inference (or, with <paramref name="training"/>, for LoRA fine-tuning with the base frozen).</summary>
    public static GptModel Load(Backend backend, string directory, int maxBatch, bool training = false, WeightStorage? storage = null)
    {
        var config = ReadConfig(directory);
        var model = new GptModel(backend, config, maxBatch, training, trainParameters: false, StorageOf(Path.Combine(directory, GptFiles.ModelFile), storage));
        try
        {
            LoadParameters(model, Path.Combine(directory, GptFiles.ModelFile));
        }
        catch
        {
            model.Dispose();
            throw;
        }
        return model;
    }

    /// <summary>Each weight's format under <paramref name="storage"/>: the file's type of its tensor where kept as stored.</summary>
    private static Func<string, int, WeightFormat>? StorageOf(string path, WeightStorage? storage)
    {
        if (storage is null || storage == WeightStorage.Float32) return null;
        var types = new Dictionary<string, WeightFormat>(StringComparer.Ordinal);
        if (File.Exists(path))
        {
            using var reader = SafetensorsReader.Open(path);
            string prefix = reader.TryGetEntry(TransformerPrefix + "wte.weight", out _) ? TransformerPrefix : "";
            foreach (var entry in reader.Entries)
                if (entry.Name.StartsWith(prefix, StringComparison.Ordinal)) types[entry.Name[prefix.Length..]] = CheckpointRows.FormatOf(entry.DType);
        }
        return storage.FormatsFor(name => Gpt2Names.ToGpt2(name) is { } key && types.TryGetValue(key, out var stored) ? stored : WeightFormat.F32);
    }

    /// <summary>Reads every parameter of <paramref name="model"/> from a GPT-2 safetensors file.</summary>
    public static void LoadParameters(GptModel model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!File.Exists(path))
        {
            bool pickle = File.Exists(Path.Combine(Path.GetDirectoryName(path) ?? ".", "pytorch_model.bin"));
            throw new FileNotFoundException(
                $"{path}: the GPT-2 weights are missing{(pickle ? " (pytorch_model.bin is not read: convert it to model.safetensors)" : "")}", path);
        }
        using var reader = SafetensorsReader.Open(path);
        string prefix = reader.TryGetEntry(TransformerPrefix + "wte.weight", out _) ? TransformerPrefix : "";
        var used = new HashSet<string>(StringComparer.Ordinal);
        float[] buffer = [], transposed = [];
        foreach (var (name, shape) in model.Parameters.Weights)
        {
            string key = prefix + (Gpt2Names.ToGpt2(name) ?? throw new InvalidOperationException($"{name} has no GPT-2 name"));
            bool conv1D = Gpt2Names.IsConv1DWeight(name);
            long[] expected = conv1D ? [shape[1], shape[0]] : Dims(shape);
            if (!reader.TryGetEntry(key, out var entry))
                throw new InvalidDataException($"{path}: missing tensor '{key}' (expected [{string.Join(", ", expected)}] for {name})");
            if (!IsFloat(entry.DType))
                throw new InvalidDataException($"{path}: tensor '{key}' is {entry.DType}; expected F32, F16 or BF16");
            if (!entry.Shape.SequenceEqual(expected))
                throw new InvalidDataException(
                    $"{path}: tensor '{key}' has shape [{string.Join(", ", entry.Shape)}]; expected [{string.Join(", ", expected)}]" +
                    (conv1D ? " (a Conv1D weight, stored [in, out])" : ""));
            used.Add(key);
            if (!conv1D)
            {
                CheckpointRows.Load(reader, key, model.Parameters, name, 0, shape.Rank == 1 ? shape[0] : shape[0], shape.Rank == 1 ? 1 : shape[1], ref buffer);
                continue;
            }
            int n = checked((int)shape.Length);
            if (buffer.Length < n) buffer = new float[n];
            reader.ReadFloat32(key, buffer.AsSpan(0, n));
            FiniteWeights.Require(buffer.AsSpan(0, n), key, path);
            // [in, out] → [out, in].
            if (transposed.Length < n) transposed = new float[n];
            int rows = shape[0], cols = shape[1];
            for (int i = 0; i < cols; i++)
                for (int o = 0; o < rows; o++) transposed[o * cols + i] = buffer[i * rows + o];
            model.Parameters.WriteRows(name, 0, transposed.AsSpan(0, n));
        }
        foreach (var entry in reader.Entries)
        {
            if (used.Contains(entry.Name)) continue;
            if (IsMaskBuffer(entry.Name, prefix)) continue;
            if (entry.Name == HeadKey)
            {
                CheckTiedHead(reader, entry, model, path);
                continue;
            }
            throw new InvalidDataException(
                $"{path}: tensor '{entry.Name}' [{string.Join(", ", entry.Shape)}] has no place in a GPT-2 model (keys are {prefix}wte.weight, {prefix}h.N.attn.c_attn.weight, …)");
        }
    }

    /// <summary>
    /// Writes <paramref name="model"/> as a GPT-2 directory (config.json and model.safetensors, each atomically), its
    /// values stored as <paramref name="dtype"/>, keys with the "transformer." prefix when <paramref name="prefixed"/>.
    /// </summary>
    public static void Save(GptModel model, string directory, SafetensorsDType dtype = SafetensorsDType.F32, bool prefixed = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        Directory.CreateDirectory(directory);
        var writer = new SafetensorsWriter(dtype);
        foreach (var p in model.Parameters.Parameters)
        {
            string key = (prefixed ? TransformerPrefix : "") + Gpt2Names.ToGpt2(p.Name);
            var values = p.Value.ToArray();
            if (!Gpt2Names.IsConv1DWeight(p.Name))
            {
                writer.Add(key, values, p.Shape.Rank == 1 ? [p.Shape[0]] : [p.Shape[0], p.Shape[1]]);
                continue;
            }
            int rows = p.Shape[0], cols = p.Shape[1];
            var stored = new float[values.Length];
            for (int o = 0; o < rows; o++)
                for (int i = 0; i < cols; i++) stored[i * rows + o] = values[o * cols + i];
            writer.Add(key, stored, cols, rows);
        }
        writer.AddMetadata("format", "pt");
        writer.Save(Path.Combine(directory, GptFiles.ModelFile));
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true })) Gpt2Config.Write(json, model.Config);
        AtomicFile.WriteAllBytes(Path.Combine(directory, GptFiles.ConfigFile), stream.ToArray());
    }

    private static bool IsFloat(SafetensorsDType dtype) => dtype is SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16;

    private static bool IsMaskBuffer(string key, string prefix)
    {
        if (!key.StartsWith(prefix + "h.", StringComparison.Ordinal)) return false;
        return key.EndsWith(".attn.bias", StringComparison.Ordinal) || key.EndsWith(".attn.masked_bias", StringComparison.Ordinal);
    }

    private static void CheckTiedHead(SafetensorsReader reader, SafetensorsEntry head, GptModel model, string path)
    {
        int v = model.Config.Vocabulary, c = model.Config.Channels;
        if (!head.Shape.SequenceEqual([(long)v, c]))
            throw new InvalidDataException($"{path}: tensor '{HeadKey}' has shape [{string.Join(", ", head.Shape)}]; expected [{v}, {c}], tied to wte.weight");
        if (!IsFloat(head.DType)) throw new InvalidDataException($"{path}: tensor '{HeadKey}' is {head.DType}; expected F32, F16 or BF16");
        // Compared in the file, piece by piece: the model's table may be kept in a stored format.
        string table = reader.TryGetEntry(TransformerPrefix + "wte.weight", out _) ? TransformerPrefix + "wte.weight" : "wte.weight";
        int piece = Math.Max(1, (1 << 18) / c);
        var a = new float[piece * c];
        var b = new float[piece * c];
        for (int r = 0; r < v; r += piece)
        {
            int n = Math.Min(piece, v - r) * c;
            reader.ReadFloat32(HeadKey, (long)r * c, a.AsSpan(0, n));
            reader.ReadFloat32(table, (long)r * c, b.AsSpan(0, n));
            for (int i = 0; i < n; i++)
                if (a[i] != b[i])
                    throw new InvalidDataException(
                        $"{path}: '{HeadKey}' differs from wte.weight (first at element {(long)r * c + i}: {a[i]} vs {b[i]}); an untied LM head is not supported");
        }
    }

    private static long[] Dims(Shape shape)
    {
        var dims = new long[shape.Rank];
        for (int i = 0; i < dims.Length; i++) dims[i] = shape[i];
        return dims;
    }
}

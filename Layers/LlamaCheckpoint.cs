using System.Text.Json;
using LoraRuntime.IO;

namespace LoraRuntime.Layers;

/// <summary>
/// A Llama-family checkpoint in Hugging Face's layout: <c>config.json</c> (see <see cref="LlamaConfig"/>) and
/// <c>model.safetensors</c>, or shards listed by <c>model.safetensors.index.json</c>, read memory-mapped, in F32, F16 or
/// BF16 (widened to float32). Keys: model.embed_tokens.weight, model.layers.N.{input_layernorm, post_attention_layernorm}
/// .weight, model.layers.N.self_attn.{q,k,v,o}_proj.{weight,bias}, model.layers.N.mlp.{gate,up,down}_proj.{weight,bias},
/// model.norm.weight, lm_head.weight. q, k and v go into the rows of our fused qkv projection, gate and up into gate_up.
/// A missing, misshapen or extra tensor is refused naming the key and the shapes; a tied head stored anyway must equal the
/// embedding; rotary inv_freq buffers of old checkpoints are skipped.
/// </summary>
internal static class LlamaCheckpoint
{
    /// <summary>The shard index's name.</summary>
    public const string IndexFile = "model.safetensors.index.json";

    /// <summary>The architecture of a Llama-family directory for contexts of up to <paramref name="context"/> positions.</summary>
    public static GptConfig ReadConfig(string directory, int? context = null)
    {
        string path = Path.Combine(directory, GptFiles.ConfigFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"{directory} is not a model directory: {GptFiles.ConfigFile} is missing", path);
        try
        {
            using var doc = JsonDocument.Parse(InputFiles.ReadAllBytes(path));
            return LlamaConfig.Parse(doc.RootElement, path, context);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{path}: not a valid configuration: {e.Message}", e);
        }
    }

    /// <summary>
    /// Loads a Llama-family directory for inference (or, with <paramref name="training"/>, for LoRA fine-tuning with the
    /// base frozen), its projection and embedding weights kept as <paramref name="storage"/> says (float32 by default).
    /// </summary>
    public static GptModel Load(Backend backend, string directory, int maxBatch, bool training = false, int? context = null,
        WeightStorage? storage = null)
    {
        var config = ReadConfig(directory, context);
        var readers = OpenShards(directory);
        try
        {
            var model = new GptModel(backend, config, maxBatch, training, trainParameters: false, StorageOf(readers, config, storage));
            try
            {
                LoadParameters(model, directory, readers);
            }
            catch
            {
                model.Dispose();
                throw;
            }
            return model;
        }
        finally
        {
            foreach (var reader in readers.Values) reader.Dispose();
        }
    }

    /// <summary>Each weight's format under <paramref name="storage"/>: the file's type of its (first) tensor where kept as stored.</summary>
    private static Func<string, int, WeightFormat>? StorageOf(Dictionary<string, SafetensorsReader> readers, GptConfig config, WeightStorage? storage)
    {
        var keys = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (ours, key, _, _) in Pieces(config)) keys.TryAdd(ours, key);
        return (storage ?? WeightStorage.Float32).FormatsFor(name =>
            !keys.TryGetValue(name, out var key) || Find(readers, key) is not { } found ? WeightFormat.F32
            : BitsAndBytesWeight.IsQuantized(k => Find(readers, k), key) ? WeightFormat.NF4
            : CheckpointRows.FormatOf(found.Entry.DType));
    }

    /// <summary>
    /// Where each of our parameters comes from: (our name, Hugging Face key, first row, rows) — the fused projections take
    /// several keys' rows.
    /// </summary>
    public static IEnumerable<(string Ours, string Key, int Row, int Rows)> Pieces(GptModel model) => Pieces(model.Config);

    /// <summary>The pieces of a model of <paramref name="config"/>.</summary>
    private static IEnumerable<(string Ours, string Key, int Row, int Rows)> Pieces(GptConfig config)
    {
        int q = config.Heads * config.HeadDim, kv = config.KvHeads * config.HeadDim, hidden = config.Hidden;
        yield return ("wte.weight", "model.embed_tokens.weight", 0, config.Vocabulary);
        for (int l = 0; l < config.Layers; l++)
        {
            string o = $"blocks.{l}.", h = $"model.layers.{l}.";
            yield return (o + "ln1.weight", h + "input_layernorm.weight", 0, config.Channels);
            yield return (o + "ln2.weight", h + "post_attention_layernorm.weight", 0, config.Channels);
            foreach (string part in config.QkvBias ? new[] { "weight", "bias" } : ["weight"])
            {
                yield return (o + "attn.qkv." + part, h + "self_attn.q_proj." + part, 0, q);
                yield return (o + "attn.qkv." + part, h + "self_attn.k_proj." + part, q, kv);
                yield return (o + "attn.qkv." + part, h + "self_attn.v_proj." + part, q + kv, kv);
            }
            foreach (string part in config.OutputBias ? new[] { "weight", "bias" } : ["weight"])
                yield return (o + "attn.o." + part, h + "self_attn.o_proj." + part, 0, config.Channels);
            if (config.QkNorm)
            {
                yield return (o + "attn.q_norm.weight", h + "self_attn.q_norm.weight", 0, config.HeadDim);
                yield return (o + "attn.k_norm.weight", h + "self_attn.k_norm.weight", 0, config.HeadDim);
            }
            foreach (string part in config.MlpBias ? new[] { "weight", "bias" } : ["weight"])
            {
                yield return (o + "mlp.gate_up." + part, h + "mlp.gate_proj." + part, 0, hidden);
                yield return (o + "mlp.gate_up." + part, h + "mlp.up_proj." + part, hidden, hidden);
                yield return (o + "mlp.down." + part, h + "mlp.down_proj." + part, 0, config.Channels);
            }
        }
        yield return ("ln_f.weight", "model.norm.weight", 0, config.Channels);
        if (!config.TiedHead) yield return ("lm_head.weight", "lm_head.weight", 0, config.Vocabulary);
    }

    /// <summary>Reads every parameter of <paramref name="model"/> from the checkpoint in <paramref name="directory"/>.</summary>
    public static void LoadParameters(GptModel model, string directory)
    {
        ArgumentNullException.ThrowIfNull(model);
        var readers = OpenShards(directory);
        try
        {
            LoadParameters(model, directory, readers);
        }
        finally
        {
            foreach (var reader in readers.Values) reader.Dispose();
        }
    }

    private static void LoadParameters(GptModel model, string directory, Dictionary<string, SafetensorsReader> readers)
    {
        var used = new HashSet<string>(StringComparer.Ordinal);
        float[] buffer = [];
        foreach (var (ours, key, row, rows) in Pieces(model))
        {
            var shape = model.Parameters.ShapeOf(ours);
            int width = shape.Rank == 1 ? 1 : shape[1];
            long[] expected = shape.Rank == 1 ? [rows] : [rows, width];
            var (reader, entry) = Find(readers, key)
                ?? throw new InvalidDataException($"{directory}: missing tensor '{key}' (expected [{string.Join(", ", expected)}] for {ours})");
            if (shape.Rank == 2 && BitsAndBytesWeight.IsQuantized(k => Find(readers, k), key))
            {
                var quantized = BitsAndBytesWeight.Open(k => Find(readers, k), key, rows, width);
                used.UnionWith(quantized.Keys);
                LoadBitsAndBytes(model.Parameters, ours, row, quantized, ref buffer);
                continue;
            }
            if (entry.DType is not (SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16))
                throw new InvalidDataException($"{reader.Path}: tensor '{key}' is {entry.DType}; expected F32, F16 or BF16");
            if (!entry.Shape.SequenceEqual(expected))
                throw new InvalidDataException($"{reader.Path}: tensor '{key}' has shape [{string.Join(", ", entry.Shape)}]; expected [{string.Join(", ", expected)}]");
            used.Add(key);
            CheckpointRows.Load(reader, key, model.Parameters, ours, row, shape.Rank == 1 ? rows : rows, width, ref buffer);
        }
        foreach (var reader in readers.Values)
            foreach (var entry in reader.Entries)
            {
                if (used.Contains(entry.Name) || entry.Name.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal)) continue;
                if (entry.Name == "lm_head.weight" && model.Config.TiedHead)
                {
                    CheckTiedHead(readers, reader, entry, model);
                    continue;
                }
                throw new InvalidDataException(
                    $"{reader.Path}: tensor '{entry.Name}' [{string.Join(", ", entry.Shape)}] has no place in the model (keys are model.embed_tokens.weight, model.layers.N.self_attn.q_proj.weight, …)");
            }
    }

    /// <summary>Files beside a checkpoint's weights that a copy of it keeps: its configuration and tokenizer.</summary>
    public static readonly IReadOnlyList<string> CompanionFiles =
        [GptFiles.ConfigFile, "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"];

    /// <summary>
    /// Writes <paramref name="model"/> (loaded from the Llama-family checkpoint in <paramref name="source"/>, weights
    /// changed since, e.g. by a merge) as a checkpoint in <paramref name="directory"/>: model.safetensors under Hugging
    /// Face's keys (the fused projections cut back into q/k/v and gate/up), stored as <paramref name="dtype"/>, and the
    /// source's configuration and tokenizer files copied; every file written atomically.
    /// </summary>
    public static void Save(GptModel model, string source, string directory, SafetensorsDType dtype = SafetensorsDType.F32)
    {
        ArgumentNullException.ThrowIfNull(model);
        Directory.CreateDirectory(directory);
        var writer = new SafetensorsWriter(dtype);
        var values = new Dictionary<string, float[]>(StringComparer.Ordinal);
        foreach (var (ours, key, row, rows) in Pieces(model))
        {
            var p = model.Parameters[ours];
            if (!values.TryGetValue(ours, out var all)) values[ours] = all = p.Value.ToArray();
            int width = p.Shape.Rank == 1 ? 1 : p.Shape[1];
            var slice = all.AsSpan(row * width, rows * width).ToArray();
            writer.Add(key, slice, p.Shape.Rank == 1 ? [rows] : [rows, width]);
        }
        writer.AddMetadata("format", "pt");
        writer.Save(Path.Combine(directory, GptFiles.ModelFile));
        foreach (string file in CompanionFiles)
        {
            string from = Path.Combine(source, file);
            if (File.Exists(from)) AtomicFile.WriteAllBytes(Path.Combine(directory, file), File.ReadAllBytes(from));
        }
    }

    /// <summary>
    /// The checkpoint's files by name: model.safetensors, or every shard the index names (file names inside the
    /// directory only: a path in the index is refused).
    /// </summary>
    private static Dictionary<string, SafetensorsReader> OpenShards(string directory)
    {
        string index = Path.Combine(directory, IndexFile), single = Path.Combine(directory, GptFiles.ModelFile);
        var readers = new Dictionary<string, SafetensorsReader>(StringComparer.Ordinal);
        try
        {
            if (!File.Exists(index))
            {
                if (!File.Exists(single))
                    throw new FileNotFoundException($"{directory}: the weights are missing ({GptFiles.ModelFile} or {IndexFile}; .bin files are not read: convert them to safetensors)", single);
                readers.Add(GptFiles.ModelFile, SafetensorsReader.Open(single));
                return readers;
            }
            using var doc = JsonDocument.Parse(InputFiles.ReadAllBytes(index));
            if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{index}: weight_map: expected an object of tensor name → shard file");
            foreach (var entry in map.EnumerateObject())
            {
                string file = entry.Value.ValueKind == JsonValueKind.String ? entry.Value.GetString()! : "";
                if (file.Length == 0 || file != Path.GetFileName(file) || file is "." or "..")
                    throw new InvalidDataException($"{index}: weight_map[\"{entry.Name}\"]: expected a file name in the checkpoint's folder; got {entry.Value.GetRawText()}");
                if (readers.ContainsKey(file)) continue;
                string path = Path.Combine(directory, file);
                if (!File.Exists(path)) throw new FileNotFoundException($"{index}: shard '{file}' (for '{entry.Name}') is missing", path);
                readers.Add(file, SafetensorsReader.Open(path));
            }
            if (readers.Count == 0) throw new InvalidDataException($"{index}: weight_map names no shard");
            return readers;
        }
        catch (JsonException e)
        {
            foreach (var r in readers.Values) r.Dispose();
            throw new InvalidDataException($"{index}: not valid JSON: {e.Message}", e);
        }
        catch
        {
            foreach (var r in readers.Values) r.Dispose();
            throw;
        }
    }

    private static (SafetensorsReader Reader, SafetensorsEntry Entry)? Find(Dictionary<string, SafetensorsReader> readers, string key)
    {
        foreach (var reader in readers.Values)
            if (reader.TryGetEntry(key, out var entry)) return (reader, entry);
        return null;
    }

    /// <summary>
    /// A bitsandbytes weight into rows <paramref name="firstRow"/>… of <paramref name="name"/>: its NF4 blocks copied
    /// where the weight is kept as NF4, else dequantized (and re-encoded in the weight's format, if any), 4 MiB at a time.
    /// </summary>
    private static void LoadBitsAndBytes(ParameterSet parameters, string name, int firstRow, BitsAndBytesWeight weight, ref float[] buffer)
    {
        int piece = Math.Max(1, (1 << 20) / weight.Columns);
        bool asStored = parameters.Stored.TryGetValue(name, out var stored) && stored.Format == WeightFormat.NF4;
        for (int r = 0; r < weight.Rows; r += piece)
        {
            int count = Math.Min(piece, weight.Rows - r);
            if (asStored)
            {
                var encoded = new byte[checked((int)(count * stored!.RowBytes))];
                weight.ReadBlocks(r, count, encoded);
                parameters.Backend.WriteEncodedRows(stored, firstRow + r, encoded);
                continue;
            }
            int n = count * weight.Columns;
            if (buffer.Length < n) buffer = new float[n];
            weight.ReadFloat32(r, count, buffer.AsSpan(0, n));
            parameters.WriteRows(name, firstRow + r, buffer.AsSpan(0, n));
        }
    }

    /// <summary>A tied model's file may hold lm_head.weight too, equal to the embedding it is tied to (compared in the file, piece by piece).</summary>
    private static void CheckTiedHead(Dictionary<string, SafetensorsReader> readers, SafetensorsReader reader, SafetensorsEntry head, GptModel model)
    {
        int v = model.Config.Vocabulary, c = model.Config.Channels;
        if (!head.Shape.SequenceEqual([(long)v, c]))
            throw new InvalidDataException($"{reader.Path}: tensor 'lm_head.weight' has shape [{string.Join(", ", head.Shape)}]; expected [{v}, {c}], tied to the embedding");
        var (tableReader, _) = Find(readers, "model.embed_tokens.weight")!.Value;
        int piece = Math.Max(1, (1 << 18) / c);
        var a = new float[piece * c];
        var b = new float[piece * c];
        for (int r = 0; r < v; r += piece)
        {
            int n = Math.Min(piece, v - r) * c;
            reader.ReadFloat32(head.Name, (long)r * c, a.AsSpan(0, n));
            tableReader.ReadFloat32("model.embed_tokens.weight", (long)r * c, b.AsSpan(0, n));
            if (!a.AsSpan(0, n).SequenceEqual(b.AsSpan(0, n)))
                throw new InvalidDataException($"{reader.Path}: lm_head.weight differs from model.embed_tokens.weight, but tie_word_embeddings is true (set it false for an untied head)");
        }
    }
}

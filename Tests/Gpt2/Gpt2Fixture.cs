using LoraRuntime.IO;
using LoraRuntime.Tests.Support;

namespace LoraRuntime.Tests.Gpt2;

/// <summary>
/// A tiny random GPT-2 checkpoint written the way Hugging Face stores one (real key names, Conv1D weights [in, out],
/// the causal-mask buffers, optionally the "transformer." prefix and a tied lm_head.weight), and a temporary folder.
/// </summary>
internal sealed class Gpt2Fixture : IDisposable
{
    public const int Vocabulary = 11, Layers = 2, Heads = 2, Channels = 8, Positions = 6;

    public Gpt2Fixture()
    {
        Directory.CreateDirectory(Root);
    }

    public string Root { get; } = Path.Combine(Path.GetTempPath(), "lora-gpt2-" + Guid.NewGuid().ToString("N"));

    /// <summary>The checkpoint's tensors by their Hugging Face names (no prefix), shapes as stored.</summary>
    public static Dictionary<string, (float[] Values, int[] Dims)> RandomTensors(int seed, int vocabulary = Vocabulary)
    {
        var t = new Dictionary<string, (float[], int[])>(StringComparer.Ordinal);
        int c = Channels, next = seed;
        void Add(string name, float scale, float offset, params int[] dims)
        {
            var values = Reference.Random(dims.Aggregate(1, (a, b) => a * b), next++);
            for (int i = 0; i < values.Length; i++) values[i] = offset + scale * values[i];
            t[name] = (values, dims);
        }
        Add("wte.weight", 0.5f, 0, vocabulary, c);
        Add("wpe.weight", 0.3f, 0, Positions, c);
        for (int l = 0; l < Layers; l++)
        {
            string h = $"h.{l}.";
            Add(h + "ln_1.weight", 0.2f, 1, c);
            Add(h + "ln_1.bias", 0.1f, 0, c);
            Add(h + "attn.c_attn.weight", 0.4f, 0, c, 3 * c);
            Add(h + "attn.c_attn.bias", 0.1f, 0, 3 * c);
            Add(h + "attn.c_proj.weight", 0.4f, 0, c, c);
            Add(h + "attn.c_proj.bias", 0.1f, 0, c);
            Add(h + "ln_2.weight", 0.2f, 1, c);
            Add(h + "ln_2.bias", 0.1f, 0, c);
            Add(h + "mlp.c_fc.weight", 0.4f, 0, c, 4 * c);
            Add(h + "mlp.c_fc.bias", 0.1f, 0, 4 * c);
            Add(h + "mlp.c_proj.weight", 0.3f, 0, 4 * c, c);
            Add(h + "mlp.c_proj.bias", 0.1f, 0, c);
        }
        Add("ln_f.weight", 0.2f, 1, c);
        Add("ln_f.bias", 0.1f, 0, c);
        return t;
    }

    /// <summary>A GPT-2 config.json with the given extra fields (raw JSON values) replacing or adding to the standard ones.</summary>
    public static string ConfigJson(params (string Name, string? Raw)[] overrides)
    {
        var fields = new List<(string, string)>
        {
            ("model_type", "\"gpt2\""), ("architectures", "[\"GPT2LMHeadModel\"]"), ("vocab_size", $"{Vocabulary}"),
            ("n_positions", $"{Positions}"), ("n_ctx", $"{Positions}"), ("n_embd", $"{Channels}"), ("n_layer", $"{Layers}"),
            ("n_head", $"{Heads}"), ("n_inner", "null"), ("activation_function", "\"gelu_new\""), ("layer_norm_epsilon", "1e-05"),
            ("resid_pdrop", "0.1"), ("embd_pdrop", "0.1"), ("attn_pdrop", "0.1"), ("initializer_range", "0.02"),
            ("scale_attn_weights", "true"), ("use_cache", "true"), ("bos_token_id", $"{Vocabulary - 1}"), ("eos_token_id", $"{Vocabulary - 1}"),
        };
        foreach (var (name, raw) in overrides)
        {
            fields.RemoveAll(f => f.Item1 == name);
            if (raw is not null) fields.Add((name, raw));
        }
        return "{\n" + string.Join(",\n", fields.Select(f => $"  \"{f.Item1}\": {f.Item2}")) + "\n}\n";
    }

    /// <summary>Writes a checkpoint into a new sub-folder and returns it.</summary>
    public string Write(Dictionary<string, (float[] Values, int[] Dims)> tensors, SafetensorsDType dtype = SafetensorsDType.F32, bool prefixed = true,
        bool buffers = true, bool head = true, string? config = null, string name = "gpt2")
    {
        string dir = Path.Combine(Root, name);
        Directory.CreateDirectory(dir);
        var writer = new SafetensorsWriter(dtype);
        string prefix = prefixed ? "transformer." : "";
        foreach (var (key, (values, dims)) in tensors) writer.Add(prefix + key, values, dims);
        if (buffers)
            for (int l = 0; l < Layers; l++)
            {
                // The causal mask and masked_bias as old checkpoints carry them (float here; real ones are bool/float).
                var mask = new float[Positions * Positions];
                for (int i = 0; i < Positions; i++)
                    for (int j = 0; j <= i; j++) mask[i * Positions + j] = 1;
                writer.Add($"{prefix}h.{l}.attn.bias", mask, 1, 1, Positions, Positions);
                writer.Add($"{prefix}h.{l}.attn.masked_bias", new float[] { -1e4f }, 1);
            }
        if (head) writer.Add("lm_head.weight", tensors["wte.weight"].Values, tensors["wte.weight"].Dims);
        writer.AddMetadata("format", "pt");
        writer.Save(Path.Combine(dir, "model.safetensors"));
        File.WriteAllText(Path.Combine(dir, "config.json"), config ?? ConfigJson());
        return dir;
    }

    /// <summary>The tensors of a written checkpoint as the file holds them (after any F16/BF16 rounding), by unprefixed name, in float64.</summary>
    public static Dictionary<string, double[]> ReadBack(string dir)
    {
        var result = new Dictionary<string, double[]>(StringComparer.Ordinal);
        using var reader = SafetensorsReader.Open(Path.Combine(dir, "model.safetensors"));
        foreach (var e in reader.Entries)
        {
            var values = new float[e.ElementCount];
            reader.ReadFloat32(e.Name, values);
            string name = e.Name.StartsWith("transformer.", StringComparison.Ordinal) ? e.Name["transformer.".Length..] : e.Name;
            result[name] = Reference.ToDouble(values);
        }
        return result;
    }

    public void Dispose()
    {
        if (Directory.Exists(Root)) Directory.Delete(Root, recursive: true);
    }
}

using LoraRuntime.IO;
using LoraRuntime.Quantization;

namespace LoraRuntime.Layers.Adapters;

/// <summary>
/// LoRA adapters as llama.cpp keeps them (convert_lora_to_gguf's layout): a GGUF file of general.type "adapter",
/// adapter.type "lora", adapter.lora.alpha, and for each adapted base tensor X ("blk.0.attn_q.weight") the pair
/// "X.lora_a" (ggml [in, R], A) and "X.lora_b" ([R, out], B), B's rows of q and k in llama.cpp's interleaved rotary order
/// for "llama". llama.cpp scales a pair by alpha / R, or by 1 when alpha is 0: written files fold each module's scale
/// (α/R, rsLoRA's α/√R, alpha_pattern) into B and say alpha 0, so every module keeps its own. Modules of our fused
/// projections as a whole (qkv, gate_up of a Llama-family model) and DoRA adapters have no llama.cpp form.
/// </summary>
internal static class GgufAdapterFile
{
    /// <summary>Writes <paramref name="adapter"/>, attached to <paramref name="model"/>, to <paramref name="path"/> (atomically).</summary>
    public static void Write(LoraAdapter adapter, GptModel model, string path)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        ArgumentNullException.ThrowIfNull(model);
        string arch = Architecture(model.Config);
        var gguf = new GgufWriter();
        gguf.Add("general.architecture", new GgufValue(GgufValueType.String, arch));
        gguf.Add("general.type", new GgufValue(GgufValueType.String, "adapter"));
        gguf.Add("adapter.type", new GgufValue(GgufValueType.String, "lora"));
        gguf.Add("adapter.lora.alpha", new GgufValue(GgufValueType.Float32, 0f));
        var backend = model.Parameters.Backend;
        foreach (var w in adapter.Modules)
        {
            if (w.Dora is not null)
                throw new ArgumentException($"adapter: {w.Module.Path} is DoRA, which llama.cpp's adapters cannot hold; merge it instead", nameof(adapter));
            string tensor = TensorOf(arch, w.Module.Path)
                ?? throw new ArgumentException($"adapter: {w.Module.Path} has no tensor of its own in llama.cpp's {arch} (target q, k, v, o, gate, up, down)", nameof(adapter));
            int r = w.Rank, input = w.Module.Base.InFeatures, output = w.Module.OutFeatures;
            var a = w.A.Value.ToArray(); // [R, in]
            var b = w.B.Value.ToArray(); // [out, R]
            for (int i = 0; i < b.Length; i++) b[i] *= w.Scale;
            byte[] bBytes = Bytes(b);
            if (arch == "llama" && RotaryHeads(model.Config, w.Module.Path) is { } heads) bBytes = RotaryRowOrder.ToInterleaved(bBytes, heads, model.Config.HeadDim);
            gguf.AddTensor(tensor + ".lora_a", GgmlType.F32, [input, r], Bytes(a));
            gguf.AddTensor(tensor + ".lora_b", GgmlType.F32, [r, output], bBytes);
        }
        gguf.Save(path);
    }

    /// <summary>
    /// Reads the adapter in <paramref name="path"/> into <paramref name="model"/> as <paramref name="name"/>: each pair's
    /// rank from its tensors, its scale alpha / R (1 for alpha 0). Everything is checked before the adapter is created.
    /// </summary>
    public static LoraAdapter Load(LoraModel model, GptModel baseModel, string name, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(baseModel);
        using var gguf = GgufReader.Open(path);
        string arch = Architecture(baseModel.Config);
        string Text(string key) => gguf.Metadata.TryGetValue(key, out var v) ? v.AsString() : "";
        if (Text("general.type") != "adapter" || Text("adapter.type") != "lora")
            throw new InvalidDataException($"{path}: not a LoRA adapter (general.type '{Text("general.type")}', adapter.type '{Text("adapter.type")}')");
        if (Text("general.architecture") != arch)
            throw new InvalidDataException($"{path}: an adapter for '{Text("general.architecture")}'; the base is '{arch}'");
        float alpha = gguf.Metadata.TryGetValue("adapter.lora.alpha", out var al) ? (float)al.AsDouble() : 0f;
        var byTensor = baseModel.LinearTargets.Where(t => TensorOf(arch, t.Path) is not null).ToDictionary(t => TensorOf(arch, t.Path)!, StringComparer.Ordinal);
        var modules = new List<(LinearTarget Target, GgufTensorInfo A, GgufTensorInfo B)>();
        foreach (var a in gguf.Tensors.Where(t => t.Name.EndsWith(".lora_a", StringComparison.Ordinal)))
        {
            string tensor = a.Name[..^".lora_a".Length];
            if (!byTensor.TryGetValue(tensor, out var target))
                throw new InvalidDataException($"{path}: '{a.Name}' adapts '{tensor}', which the base has no projection for");
            if (!gguf.TryGetTensor(tensor + ".lora_b", out var b))
                throw new InvalidDataException($"{path}: '{a.Name}' has no '{tensor}.lora_b'");
            if (a.Dimensions.Length != 2 || a.Dimensions[0] != target.Linear.InFeatures || b.Dimensions.Length != 2 || b.Dimensions[0] != a.Dimensions[1]
                || b.Dimensions[1] != target.OutputFeatures)
                throw new InvalidDataException(
                    $"{path}: '{tensor}' has lora_a [{string.Join(", ", a.Dimensions)}] and lora_b [{string.Join(", ", b.Dimensions)}]; expected [{target.Linear.InFeatures}, R] and [R, {target.OutputFeatures}]");
            modules.Add((target, a, b));
        }
        var extra = gguf.Tensors.FirstOrDefault(t => !t.Name.EndsWith(".lora_a", StringComparison.Ordinal) && !t.Name.EndsWith(".lora_b", StringComparison.Ordinal)
            || t.Name.EndsWith(".lora_b", StringComparison.Ordinal) && !gguf.TryGetTensor(t.Name[..^2] + "_a", out _));
        if (extra is not null) throw new InvalidDataException($"{path}: tensor '{extra.Name}' is not half of a lora_a / lora_b pair");
        if (modules.Count == 0) throw new InvalidDataException($"{path}: the adapter holds no lora_a / lora_b pair");

        var ranks = new Dictionary<string, int>(StringComparer.Ordinal);
        var alphas = new Dictionary<string, float>(StringComparer.Ordinal);
        foreach (var (target, a, _) in modules)
        {
            int r = checked((int)a.Dimensions[1]);
            ranks[target.Path] = r;
            alphas[target.Path] = alpha != 0 ? alpha : r; // scale alpha / R, or 1
        }
        var config = new LoraConfig
        {
            TargetModules = modules.Select(m => m.Target.Path).ToList(),
            Defaults = new LoraOptions { Rank = ranks.Values.First(), Alpha = alphas.Values.First() },
            RankPattern = ranks, AlphaPattern = alphas,
        };
        var adapter = model.AddAdapter(name, config);
        foreach (var w in adapter.Modules)
        {
            var (target, a, b) = modules.First(m => m.Target.Path == w.Module.Path);
            w.A.Value.CopyFrom(Floats(gguf, a, path));
            var bValues = Floats(gguf, b, path);
            if (arch == "llama" && RotaryHeads(baseModel.Config, target.Path) is { } heads)
                bValues = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(
                    RotaryRowOrder.ToRotateHalf(Bytes(bValues), heads, baseModel.Config.HeadDim)).ToArray();
            w.B.Value.CopyFrom(bValues);
        }
        return adapter;
    }

    private static string Architecture(GptConfig c) =>
        c.Rotary is null ? "gpt2" : c.QkvBias ? "qwen2" : "llama";

    /// <summary>The llama.cpp tensor a module path adapts, or null where it has none.</summary>
    internal static string? TensorOf(string arch, string path)
    {
        var parts = path.Split('.');
        if (parts.Length != 4 || parts[0] != "blocks" || !int.TryParse(parts[1], out int layer)) return null;
        string? name = (arch, parts[2], parts[3]) switch
        {
            ("gpt2", "attn", "qkv") => "attn_qkv",
            ("gpt2", "attn", "o") => "attn_output",
            ("gpt2", "mlp", "fc") => "ffn_up",
            ("gpt2", "mlp", "proj") => "ffn_down",
            (not "gpt2", "attn", "q") => "attn_q",
            (not "gpt2", "attn", "k") => "attn_k",
            (not "gpt2", "attn", "v") => "attn_v",
            (not "gpt2", "attn", "o") => "attn_output",
            (not "gpt2", "mlp", "gate") => "ffn_gate",
            (not "gpt2", "mlp", "up") => "ffn_up",
            (not "gpt2", "mlp", "down") => "ffn_down",
            _ => null,
        };
        return name is null ? null : $"blk.{layer}.{name}.weight";
    }

    /// <summary>The heads whose rows a module's B holds in rotary order (q and k), or null.</summary>
    private static int? RotaryHeads(GptConfig c, string path) =>
        path.EndsWith(".attn.q", StringComparison.Ordinal) ? c.Heads : path.EndsWith(".attn.k", StringComparison.Ordinal) ? c.KvHeads : null;

    private static byte[] Bytes(float[] values)
    {
        var bytes = new byte[values.Length * sizeof(float)];
        Buffer.BlockCopy(values, 0, bytes, 0, bytes.Length);
        return bytes;
    }

    /// <summary>A pair's tensor as float32 (F32, F16 or BF16, as the converter writes them), checked finite.</summary>
    private static float[] Floats(GgufReader gguf, GgufTensorInfo t, string path)
    {
        var bytes = new byte[t.Bytes];
        gguf.ReadBytes(t, bytes);
        long count = t.Dimensions.Aggregate(1L, (p, d) => p * d);
        var values = new float[count];
        switch (t.Type)
        {
            case GgmlType.F32: Buffer.BlockCopy(bytes, 0, values, 0, bytes.Length); break;
            case GgmlType.F16: WeightRows.Decode(WeightFormat.F16, bytes, values); break;
            case GgmlType.BF16: WeightRows.Decode(WeightFormat.BF16, bytes, values); break;
            default: throw new InvalidDataException($"{path}: '{t.Name}' is {t.Type}; adapter pairs are read as F32, F16 or BF16");
        }
        int bad = FiniteWeights.IndexOfNonFinite(values);
        if (bad >= 0) throw new InvalidDataException($"{path}: '{t.Name}' holds a non-finite value at element {bad}");
        return values;
    }
}

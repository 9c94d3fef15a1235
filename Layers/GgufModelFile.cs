using LoraRuntime.Layers.Text;
using LoraRuntime.IO;
using LoraRuntime.Quantization;

namespace LoraRuntime.Layers;

/// <summary>
/// Writes a model as a GGUF file llama.cpp loads — a GPT-2 model as "gpt2", a Llama-family one as "llama", or "qwen2"
/// for a model with q/k/v biases: its hyper-parameters under the architecture's keys, the tensors under llama.cpp's names
/// (token_embd, blk.N.attn_q …, output_norm, output when untied) in the format each weight is kept in (F32, F16, BF16,
/// Q8_0, Q4_0; norms and biases F32), q and k rows reordered from Hugging Face's rotate-half layout to llama.cpp's
/// interleaved one for "llama" (as its converter does), and the model's byte-level BPE tokenizer where llama.cpp runs
/// it, else a placeholder vocabulary of the model's size (256 byte tokens, then placeholders) for token ids.
/// </summary>
internal static class GgufModelFile
{
    /// <summary>
    /// Writes <paramref name="model"/> to <paramref name="path"/> (atomically), named <paramref name="name"/>, with
    /// <paramref name="tokenizer"/>'s vocabulary where llama.cpp can run it (a byte-level BPE with GPT-2's, Llama 3's or
    /// Qwen2's split), else a placeholder byte vocabulary.
    /// </summary>
    public static void Write(GptModel model, string path, string name, ITokenizer? tokenizer = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var c = model.Config;
        if (c.Norm == NormKind.LayerNorm && c.Mlp == MlpKind.Gelu && c.Rotary is null && c.QkvBias && c.OutputBias && c.MlpBias
            && c.TiedHead && c.KvHeads == c.Heads && c.FactoredRanks.Count == 0)
        {
            WriteGpt2(model, path, name, tokenizer);
            return;
        }
        if (c.Norm != NormKind.RmsNorm || c.Mlp != MlpKind.GatedSilu || c.Rotary is not { } rotary)
            throw new ArgumentException("model: GGUF export writes GPT-2 models and Llama-family models (RMSNorm, gated SiLU MLP, rotary positions)", nameof(model));
        if (rotary.Scaling is not (RopeScaling.None or RopeScaling.Linear or RopeScaling.Llama3) || rotary.PartialFactor != 1 || c.QkNorm || c.OutputBias
            || c.MlpBias || c.FactoredRanks.Count > 0)
            throw new ArgumentException(
                "model: GGUF export writes the plain Llama and Qwen2 blocks (rope scaling none, linear or llama3; no partial rotary, q/k norm, output or MLP biases, factored layers)", nameof(model));
        string arch = c.QkvBias ? "qwen2" : "llama";
        var main = MainFormat(model.Parameters);
        var gguf = new GgufWriter();
        void U32(string key, long value) => gguf.Add(key, new GgufValue(GgufValueType.UInt32, checked((uint)value)));
        void F32(string key, double value) => gguf.Add(key, new GgufValue(GgufValueType.Float32, (float)value));
        gguf.Add("general.architecture", new GgufValue(GgufValueType.String, arch));
        gguf.Add("general.name", new GgufValue(GgufValueType.String, name));
        U32("general.file_type", FileType(main));
        U32("general.quantization_version", 2);
        U32(arch + ".context_length", c.BlockSize);
        U32(arch + ".embedding_length", c.Channels);
        U32(arch + ".block_count", c.Layers);
        U32(arch + ".feed_forward_length", c.Hidden);
        U32(arch + ".attention.head_count", c.Heads);
        U32(arch + ".attention.head_count_kv", c.KvHeads);
        U32(arch + ".attention.key_length", c.HeadDim);
        U32(arch + ".attention.value_length", c.HeadDim);
        U32(arch + ".rope.dimension_count", c.HeadDim);
        U32(arch + ".vocab_size", c.Vocabulary);
        F32(arch + ".rope.freq_base", rotary.Theta);
        F32(arch + ".attention.layer_norm_rms_epsilon", c.LayerNormEpsilon);
        AddVocabulary(gguf, c.Vocabulary, tokenizer);
        // Scaling as llama.cpp's converter writes it: per-frequency divisors (rope_freqs) for Llama 3's and for factors
        // read from a GGUF; linear scaling as its key and factor.
        if (rotary.Scaling == RopeScaling.Linear && rotary.FrequencyFactors is null)
        {
            gguf.Add(arch + ".rope.scaling.type", new GgufValue(GgufValueType.String, "linear"));
            F32(arch + ".rope.scaling.factor", rotary.Factor);
        }
        else if (rotary.Scaling != RopeScaling.None || rotary.FrequencyFactors is not null)
        {
            var factors = RotaryTables.FrequencyFactors(rotary, c.HeadDim, c.BlockSize).Select(f => (float)f).ToArray();
            gguf.AddTensor("rope_freqs.weight", GgmlType.F32, [factors.Length], System.Runtime.InteropServices.MemoryMarshal.AsBytes(factors.AsSpan()));
        }

        var set = model.Parameters;
        int q = c.Heads * c.HeadDim, kv = c.KvHeads * c.HeadDim;
        bool permute = arch == "llama";
        gguf.AddTensor("token_embd.weight", Type(set, "wte.weight"), [c.Channels, c.Vocabulary], Rows(set, "wte.weight", 0, c.Vocabulary));
        for (int l = 0; l < c.Layers; l++)
        {
            string o = $"blocks.{l}.", g = $"blk.{l}.";
            gguf.AddTensor(g + "attn_norm.weight", GgmlType.F32, [c.Channels], Rows(set, o + "ln1.weight", 0, c.Channels));
            gguf.AddTensor(g + "ffn_norm.weight", GgmlType.F32, [c.Channels], Rows(set, o + "ln2.weight", 0, c.Channels));
            string qkv = o + "attn.qkv.weight";
            var type = Type(set, qkv);
            byte[] wq = Rows(set, qkv, 0, q), wk = Rows(set, qkv, q, kv);
            if (permute)
            {
                wq = RotaryRowOrder.ToInterleaved(wq, c.Heads, c.HeadDim);
                wk = RotaryRowOrder.ToInterleaved(wk, c.KvHeads, c.HeadDim);
            }
            gguf.AddTensor(g + "attn_q.weight", type, [c.Channels, q], wq);
            gguf.AddTensor(g + "attn_k.weight", type, [c.Channels, kv], wk);
            gguf.AddTensor(g + "attn_v.weight", type, [c.Channels, kv], Rows(set, qkv, q + kv, kv));
            if (c.QkvBias)
            {
                string bias = o + "attn.qkv.bias";
                gguf.AddTensor(g + "attn_q.bias", GgmlType.F32, [q], Rows(set, bias, 0, q));
                gguf.AddTensor(g + "attn_k.bias", GgmlType.F32, [kv], Rows(set, bias, q, kv));
                gguf.AddTensor(g + "attn_v.bias", GgmlType.F32, [kv], Rows(set, bias, q + kv, kv));
            }
            gguf.AddTensor(g + "attn_output.weight", Type(set, o + "attn.o.weight"), [q, c.Channels], Rows(set, o + "attn.o.weight", 0, c.Channels));
            string gateUp = o + "mlp.gate_up.weight";
            gguf.AddTensor(g + "ffn_gate.weight", Type(set, gateUp), [c.Channels, c.Hidden], Rows(set, gateUp, 0, c.Hidden));
            gguf.AddTensor(g + "ffn_up.weight", Type(set, gateUp), [c.Channels, c.Hidden], Rows(set, gateUp, c.Hidden, c.Hidden));
            gguf.AddTensor(g + "ffn_down.weight", Type(set, o + "mlp.down.weight"), [c.Hidden, c.Channels], Rows(set, o + "mlp.down.weight", 0, c.Channels));
        }
        gguf.AddTensor("output_norm.weight", GgmlType.F32, [c.Channels], Rows(set, "ln_f.weight", 0, c.Channels));
        if (!c.TiedHead) gguf.AddTensor("output.weight", Type(set, "lm_head.weight"), [c.Channels, c.Vocabulary], Rows(set, "lm_head.weight", 0, c.Vocabulary));
        gguf.Save(path);
    }

    /// <summary>A GPT-2 model under llama.cpp's "gpt2" architecture: learned positions, LayerNorms and biases, the fused QKV.</summary>
    private static void WriteGpt2(GptModel model, string path, string name, ITokenizer? tokenizer)
    {
        var c = model.Config;
        var set = model.Parameters;
        var gguf = new GgufWriter();
        void U32(string key, long value) => gguf.Add(key, new GgufValue(GgufValueType.UInt32, checked((uint)value)));
        gguf.Add("general.architecture", new GgufValue(GgufValueType.String, "gpt2"));
        gguf.Add("general.name", new GgufValue(GgufValueType.String, name));
        U32("general.file_type", FileType(MainFormat(set)));
        U32("general.quantization_version", 2);
        U32("gpt2.context_length", c.BlockSize);
        U32("gpt2.embedding_length", c.Channels);
        U32("gpt2.block_count", c.Layers);
        U32("gpt2.feed_forward_length", c.Hidden);
        U32("gpt2.attention.head_count", c.Heads);
        gguf.Add("gpt2.attention.layer_norm_epsilon", new GgufValue(GgufValueType.Float32, c.LayerNormEpsilon));
        AddVocabulary(gguf, c.Vocabulary, tokenizer);
        void Vector(string gg, string ours, int n) => gguf.AddTensor(gg, GgmlType.F32, [n], Rows(set, ours, 0, n));
        void Matrix(string gg, string ours, int rows, int columns) => gguf.AddTensor(gg, Type(set, ours), [columns, rows], Rows(set, ours, 0, rows));
        Matrix("token_embd.weight", "wte.weight", c.Vocabulary, c.Channels);
        gguf.AddTensor("position_embd.weight", GgmlType.F32, [c.Channels, c.BlockSize], Rows(set, "wpe.weight", 0, c.BlockSize));
        for (int l = 0; l < c.Layers; l++)
        {
            string o = $"blocks.{l}.", g = $"blk.{l}.";
            Vector(g + "attn_norm.weight", o + "ln1.weight", c.Channels);
            Vector(g + "attn_norm.bias", o + "ln1.bias", c.Channels);
            Matrix(g + "attn_qkv.weight", o + "attn.qkv.weight", 3 * c.Channels, c.Channels);
            Vector(g + "attn_qkv.bias", o + "attn.qkv.bias", 3 * c.Channels);
            Matrix(g + "attn_output.weight", o + "attn.o.weight", c.Channels, c.Channels);
            Vector(g + "attn_output.bias", o + "attn.o.bias", c.Channels);
            Vector(g + "ffn_norm.weight", o + "ln2.weight", c.Channels);
            Vector(g + "ffn_norm.bias", o + "ln2.bias", c.Channels);
            Matrix(g + "ffn_up.weight", o + "mlp.fc.weight", c.Hidden, c.Channels);
            Vector(g + "ffn_up.bias", o + "mlp.fc.bias", c.Hidden);
            Matrix(g + "ffn_down.weight", o + "mlp.proj.weight", c.Channels, c.Hidden);
            Vector(g + "ffn_down.bias", o + "mlp.proj.bias", c.Channels);
        }
        Vector("output_norm.weight", "ln_f.weight", c.Channels);
        Vector("output_norm.bias", "ln_f.bias", c.Channels);
        gguf.Save(path);
    }

    /// <summary>The format most stored weights have (F32 when none is stored).</summary>
    private static WeightFormat MainFormat(ParameterSet set)
    {
        var stored = set.Stored.Values.ToList();
        return stored.Count == 0 ? WeightFormat.F32 : stored.GroupBy(m => m.Format).OrderByDescending(g => g.Count()).First().Key;
    }

    /// <summary>llama.cpp's LLAMA_FTYPE of a model mostly in <paramref name="format"/>.</summary>
    private static uint FileType(WeightFormat format) => format switch
    {
        WeightFormat.F32 => 0,
        WeightFormat.F16 => 1,
        WeightFormat.Q4_0 => 2,
        WeightFormat.Q8_0 => 7,
        WeightFormat.BF16 => 32,
        WeightFormat.Q4_K => 15,
        WeightFormat.Q6_K => 18,
        _ => throw new ArgumentException($"format: {format} has no GGUF type; write F32, F16, BF16, Q8_0 or Q4_0", nameof(format)),
    };

    private static GgmlType Type(ParameterSet set, string name) => set.Stored.TryGetValue(name, out var m)
        ? m.Format switch
        {
            WeightFormat.F16 => GgmlType.F16,
            WeightFormat.BF16 => GgmlType.BF16,
            WeightFormat.Q8_0 => GgmlType.Q8_0,
            WeightFormat.Q4_0 => GgmlType.Q4_0,
            WeightFormat.Q4_K => GgmlType.Q4_K,
            WeightFormat.Q6_K => GgmlType.Q6_K,
            _ => throw new ArgumentException($"model: {name} is kept as {m.Format}, which GGUF has no type for; write F32, F16, BF16, Q8_0 or Q4_0", "model"),
        }
        : GgmlType.F32;

    /// <summary>Rows of a weight as its GGUF tensor holds them: a stored weight's encoded rows, a float32 parameter's bytes.</summary>
    private static byte[] Rows(ParameterSet set, string name, int firstRow, int rows)
    {
        if (set.Stored.TryGetValue(name, out var m))
        {
            var bytes = new byte[rows * m.RowBytes];
            set.Backend.ReadEncodedRows(m, firstRow, bytes);
            return bytes;
        }
        var p = set[name];
        int width = p.Shape.Rank == 1 ? 1 : p.Shape.Last;
        using var view = p.Value.View((long)firstRow * width, new Shape(rows * width));
        var values = view.ToArray();
        var result = new byte[values.Length * sizeof(float)];
        Buffer.BlockCopy(values, 0, result, 0, result.Length);
        return result;
    }

    /// <summary>
    /// True when a model file of <paramref name="size"/> token ids carries <paramref name="tokenizer"/> as llama.cpp runs
    /// it; false when <see cref="Write"/> gives it the placeholder vocabulary (the file then runs on token ids).
    /// </summary>
    public static bool CarriesVocabulary(ITokenizer? tokenizer, int size) => VocabularyOf(tokenizer, size) is not null;

    private static (string[] Tokens, int[] Types, IReadOnlyList<string> Merges, string Pre, int[] Prefix)? VocabularyOf(ITokenizer? tokenizer, int size) =>
        tokenizer is HuggingFaceTokenizer hf && hf.GgufVocabulary() is { } vocabulary && vocabulary.Tokens.Length <= size ? vocabulary : null;

    /// <summary>
    /// The tokenizer keys: <paramref name="tokenizer"/>'s byte-level BPE (tokens by id, padded with unused ones to the
    /// model's <paramref name="size"/>; merges; control tokens; its split's name; BOS and EOS), or, where it has none
    /// llama.cpp runs, GPT-2's 256 byte characters then placeholders and no merges, so that the file runs on token ids.
    /// </summary>
    private static void AddVocabulary(GgufWriter gguf, int size, ITokenizer? tokenizer)
    {
        var tokens = new string[size];
        var types = new object[size];
        string[] merges = [];
        string pre = "default";
        if (VocabularyOf(tokenizer, size) is { } vocabulary)
        {
            for (int i = 0; i < size; i++)
                (tokens[i], types[i]) = i < vocabulary.Tokens.Length ? (vocabulary.Tokens[i], vocabulary.Types[i]) : ($"[UNUSED{i}]", (object)5);
            merges = [.. vocabulary.Merges];
            pre = vocabulary.Pre;
            if (vocabulary.Prefix.Length == 1)
            {
                gguf.Add("tokenizer.ggml.bos_token_id", new GgufValue(GgufValueType.UInt32, (uint)vocabulary.Prefix[0]));
                gguf.Add("tokenizer.ggml.add_bos_token", new GgufValue(GgufValueType.Bool, true));
            }
            if (tokenizer!.EndOfSequence.Count > 0) gguf.Add("tokenizer.ggml.eos_token_id", new GgufValue(GgufValueType.UInt32, (uint)tokenizer.EndOfSequence[0]));
        }
        else
        {
            for (int i = 0; i < size; i++)
            {
                tokens[i] = i < 256 ? ByteLevel.Char((byte)i).ToString() : $"<|t{i}|>";
                types[i] = i < 256 ? 1 : 4; // normal, user-defined
            }
            gguf.Add("tokenizer.ggml.bos_token_id", new GgufValue(GgufValueType.UInt32, 0u));
            gguf.Add("tokenizer.ggml.eos_token_id", new GgufValue(GgufValueType.UInt32, (uint)Math.Min(size - 1, 256)));
        }
        gguf.Add("tokenizer.ggml.model", new GgufValue(GgufValueType.String, "gpt2"));
        gguf.Add("tokenizer.ggml.pre", new GgufValue(GgufValueType.String, pre));
        gguf.Add("tokenizer.ggml.tokens", new GgufValue(GgufValueType.Array, tokens, GgufValueType.String));
        gguf.Add("tokenizer.ggml.token_type", new GgufValue(GgufValueType.Array, types, GgufValueType.Int32));
        gguf.Add("tokenizer.ggml.merges", new GgufValue(GgufValueType.Array, merges, GgufValueType.String));
    }
}

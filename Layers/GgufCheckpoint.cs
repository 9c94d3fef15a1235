using LoraRuntime.IO;
using LoraRuntime.Quantization;

namespace LoraRuntime.Layers;

/// <summary>
/// Loads a Llama-family GGUF file (architecture "llama", "mistral" or "qwen2", as llama.cpp's converter writes them) as
/// a frozen base: the hyper-parameters from its keys, each weight kept in its file type (F32, F16, BF16, Q8_0, Q4_0,
/// Q4_K, Q6_K;
/// block rows copied as they are) or in the format asked for, q and k rows put back from llama.cpp's interleaved rotary
/// order into Hugging Face's rotate-half one ("llama" and "mistral"), fused q/k/v and gate/up rows filled from their
/// tensors. The model runs on token ids: the file's tokenizer is not read yet.
/// </summary>
internal static class GgufCheckpoint
{
    /// <summary>True when <paramref name="path"/> is a file that begins with GGUF's magic.</summary>
    public static bool IsGguf(string path)
    {
        if (!File.Exists(path)) return false;
        using var file = File.OpenHandle(path);
        Span<byte> magic = stackalloc byte[4];
        return RandomAccess.Read(file, magic, 0) == 4 && BitConverter.ToUInt32(magic) == GgufReader.Magic;
    }

    /// <summary>Loads <paramref name="path"/> for inference (or LoRA fine-tuning with the base frozen), its weights kept as <paramref name="storage"/> says (float32 when null).</summary>
    public static GptModel Load(Backend backend, string path, int maxBatch, bool training = false, WeightStorage? storage = null, int? context = null)
    {
        using var gguf = GgufReader.Open(path);
        var (config, arch) = ReadConfig(gguf, context);
        bool permute = arch is "llama" or "mistral";
        var pieces = Pieces(config).ToList();
        var fileFormats = new Dictionary<string, WeightFormat>(StringComparer.Ordinal);
        foreach (var piece in pieces)
        {
            var tensor = Tensor(gguf, piece.Key);
            var format = FormatOf(tensor, path);
            // Fused rows from tensors of different types (Q4_K_M's q/k Q4_K beside v Q6_K) take one type that holds both:
            // Q8_0 between quantized ones, BF16 otherwise.
            fileFormats[piece.Ours] = !fileFormats.TryGetValue(piece.Ours, out var seen) || seen == format ? format
                : seen is WeightFormat.F32 or WeightFormat.F16 or WeightFormat.BF16 || format is WeightFormat.F32 or WeightFormat.F16 or WeightFormat.BF16
                    ? WeightFormat.BF16 : WeightFormat.Q8_0;
        }
        // As every loader: null is float32 (merging, compression); the commands ask for the stored types.
        var formats = (storage ?? WeightStorage.Float32).FormatsFor(name => fileFormats.TryGetValue(name, out var f) ? f : WeightFormat.F32);
        var model = new GptModel(backend, config, maxBatch, training, trainParameters: false, formats);
        try
        {
            foreach (var piece in pieces) LoadPiece(gguf, model.Parameters, piece, permute ? config : null, path);
            var used = pieces.Select(p => p.Key).ToHashSet(StringComparer.Ordinal);
            used.Add("rope_freqs.weight"); // read with the configuration
            if (gguf.Tensors.FirstOrDefault(t => !used.Contains(t.Name)) is { } extra)
                throw new InvalidDataException(
                    $"{path}: tensor '{extra.Name}' [{string.Join(", ", extra.Dimensions)}] has no place in a {arch} model (names are token_embd.weight, blk.N.attn_q.weight, …)");
        }
        catch
        {
            model.Dispose();
            throw;
        }
        return model;
    }

    /// <summary>The configuration a GGUF file's keys describe (its context capped at <paramref name="context"/>) and its architecture.</summary>
    public static (GptConfig Config, string Architecture) ReadConfig(GgufReader gguf, int? context = null)
    {
        string arch = Key(gguf, "general.architecture").AsString();
        if (arch is not ("llama" or "mistral" or "qwen2"))
            throw new InvalidDataException($"{gguf.Path}: general.architecture is '{arch}'; this runtime loads llama, mistral and qwen2 GGUF models");
        int Int(string key) => checked((int)Key(gguf, arch + "." + key).AsInteger());
        int channels = Int("embedding_length"), heads = Int("attention.head_count");
        int kvHeads = gguf.Metadata.ContainsKey(arch + ".attention.head_count_kv") ? Int("attention.head_count_kv") : heads;
        int headDim = gguf.Metadata.ContainsKey(arch + ".attention.key_length") ? Int("attention.key_length") : channels / heads;
        var embedding = Tensor(gguf, "token_embd.weight");
        if (embedding.Dimensions.Length != 2 || embedding.Dimensions[0] != channels)
            throw new InvalidDataException($"{gguf.Path}: token_embd.weight is [{string.Join(", ", embedding.Dimensions)}]; expected [{channels}, V]");
        int block = Int("context_length");
        if (context is { } c) block = Math.Min(block, c);
        double theta = gguf.Metadata.TryGetValue(arch + ".rope.freq_base", out var b) ? b.AsDouble() : 10000;
        float eps = gguf.Metadata.TryGetValue(arch + ".attention.layer_norm_rms_epsilon", out var e) ? (float)e.AsDouble() : 1e-5f;
        var config = new GptConfig(checked((int)embedding.Dimensions[1]), Int("block_count"), heads, channels, block, eps)
        {
            Norm = NormKind.RmsNorm, Mlp = MlpKind.GatedSilu, IntermediateSize = Int("feed_forward_length"), KeyValueHeads = kvHeads, HeadSize = headDim,
            QkvBias = gguf.TryGetTensor("blk.0.attn_q.bias", out _), OutputBias = false, MlpBias = false,
            TiedHead = !gguf.TryGetTensor("output.weight", out _), Rotary = Rotary(gguf, arch, theta, headDim),
        };
        try
        {
            config.Validate();
        }
        catch (ArgumentException ex)
        {
            throw new InvalidDataException($"{gguf.Path}: not a model this runtime runs: {ex.Message}", ex);
        }
        return (config, arch);
    }

    /// <summary>
    /// The rotary options: θ's base, the scaling llama.cpp names (<c>{arch}.rope.scaling.type</c>: none, or linear with its
    /// factor; YaRN is refused by name) and <c>rope_freqs.weight</c>, the per-frequency divisors its converter writes for
    /// Llama 3's scaling.
    /// </summary>
    private static RotaryOptions Rotary(GgufReader gguf, string arch, double theta, int headDim)
    {
        var options = new RotaryOptions { Theta = theta };
        if (gguf.Metadata.TryGetValue(arch + ".rope.scaling.type", out var type))
        {
            string kind = type.AsString();
            if (kind == "linear")
                options = options with
                {
                    Scaling = RopeScaling.Linear,
                    Factor = gguf.Metadata.TryGetValue(arch + ".rope.scaling.factor", out var f) ? f.AsDouble()
                        : throw new InvalidDataException($"{gguf.Path}: {arch}.rope.scaling.type is linear but {arch}.rope.scaling.factor is missing"),
                };
            else if (kind != "none")
                throw new InvalidDataException($"{gguf.Path}: {arch}.rope.scaling.type is '{kind}'; this runtime reads none and linear from GGUF (and Llama 3's rope_freqs)");
        }
        if (gguf.TryGetTensor("rope_freqs.weight", out var freqs))
        {
            if (freqs.Type != GgmlType.F32 || freqs.Dimensions.Length != 1 || freqs.Dimensions[0] != headDim / 2)
                throw new InvalidDataException(
                    $"{gguf.Path}: rope_freqs.weight is {freqs.Type} [{string.Join(", ", freqs.Dimensions)}]; expected F32 [{headDim / 2}] (one factor a rotated pair)");
            var bytes = new byte[freqs.Bytes];
            gguf.ReadBytes(freqs, bytes);
            options = options with { FrequencyFactors = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray().Select(v => (double)v).ToArray() };
        }
        return options;
    }

    /// <summary>One file tensor's rows into our weight: (our name, GGUF name, first row, rows, whether q/k rows are interleaved there, heads).</summary>
    private readonly record struct Piece(string Ours, string Key, int Row, int Rows, int RotaryHeads);

    private static IEnumerable<Piece> Pieces(GptConfig c)
    {
        int q = c.Heads * c.HeadDim, kv = c.KvHeads * c.HeadDim;
        yield return new("wte.weight", "token_embd.weight", 0, c.Vocabulary, 0);
        for (int l = 0; l < c.Layers; l++)
        {
            string o = $"blocks.{l}.", g = $"blk.{l}.";
            yield return new(o + "ln1.weight", g + "attn_norm.weight", 0, c.Channels, 0);
            yield return new(o + "ln2.weight", g + "ffn_norm.weight", 0, c.Channels, 0);
            yield return new(o + "attn.qkv.weight", g + "attn_q.weight", 0, q, c.Heads);
            yield return new(o + "attn.qkv.weight", g + "attn_k.weight", q, kv, c.KvHeads);
            yield return new(o + "attn.qkv.weight", g + "attn_v.weight", q + kv, kv, 0);
            if (c.QkvBias)
            {
                yield return new(o + "attn.qkv.bias", g + "attn_q.bias", 0, q, 0);
                yield return new(o + "attn.qkv.bias", g + "attn_k.bias", q, kv, 0);
                yield return new(o + "attn.qkv.bias", g + "attn_v.bias", q + kv, kv, 0);
            }
            yield return new(o + "attn.o.weight", g + "attn_output.weight", 0, c.Channels, 0);
            yield return new(o + "mlp.gate_up.weight", g + "ffn_gate.weight", 0, c.Hidden, 0);
            yield return new(o + "mlp.gate_up.weight", g + "ffn_up.weight", c.Hidden, c.Hidden, 0);
            yield return new(o + "mlp.down.weight", g + "ffn_down.weight", 0, c.Channels, 0);
        }
        yield return new("ln_f.weight", "output_norm.weight", 0, c.Channels, 0);
        if (!c.TiedHead) yield return new("lm_head.weight", "output.weight", 0, c.Vocabulary, 0);
    }

    private static void LoadPiece(GgufReader gguf, ParameterSet set, Piece piece, GptConfig? permute, string path)
    {
        var shape = set.ShapeOf(piece.Ours);
        int width = shape.Rank == 1 ? 1 : shape[1];
        var tensor = Tensor(gguf, piece.Key);
        long[] expected = shape.Rank == 1 ? [piece.Rows] : [width, piece.Rows];
        if (!tensor.Dimensions.SequenceEqual(expected))
            throw new InvalidDataException($"{path}: tensor '{piece.Key}' is [{string.Join(", ", tensor.Dimensions)}]; expected [{string.Join(", ", expected)}] for {piece.Ours}");
        var format = FormatOf(tensor, path);
        long rowBytes = format == WeightFormat.F32 ? 4L * width : format.RowBytes(width);
        int headDim = permute?.HeadDim ?? 0;
        bool interleaved = permute is not null && piece.RotaryHeads > 0;
        // Rows in pieces of about 4 MiB; a rotary tensor a head at a time, whose rows come back in rotate-half order.
        int step = interleaved ? headDim : (int)Math.Max(1, (4L << 20) / rowBytes);
        var bytes = new byte[step * rowBytes];
        set.Stored.TryGetValue(piece.Ours, out var stored);
        float[] values = stored is not null && stored.Format == format ? [] : new float[step * width];
        for (int r = 0; r < piece.Rows; r += step)
        {
            int rows = Math.Min(step, piece.Rows - r);
            var span = bytes.AsSpan(0, (int)(rows * rowBytes));
            gguf.ReadBytes(tensor, r * rowBytes, span);
            if (interleaved) span = RotaryRowOrder.ToRotateHalf(span, 1, headDim); // a head at a time
            if (stored is not null && stored.Format == format)
            {
                set.Backend.WriteEncodedRows(stored, piece.Row + r, span);
                continue;
            }
            var floats = values.AsSpan(0, rows * width);
            if (format == WeightFormat.F32) System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(span).CopyTo(floats);
            else WeightRows.Decode(format, span, floats);
            int bad = FiniteWeights.IndexOfNonFinite(floats);
            if (bad >= 0) throw new InvalidDataException($"{path}: tensor '{piece.Key}' holds a non-finite value at row {r + bad / width}; the weights are corrupt");
            set.WriteRows(piece.Ours, piece.Row + r, floats);
        }
    }

    private static WeightFormat FormatOf(GgufTensorInfo tensor, string path) => tensor.Type switch
    {
        GgmlType.F32 => WeightFormat.F32,
        GgmlType.F16 => WeightFormat.F16,
        GgmlType.BF16 => WeightFormat.BF16,
        GgmlType.Q8_0 => WeightFormat.Q8_0,
        GgmlType.Q4_0 => WeightFormat.Q4_0,
        GgmlType.Q4_K => WeightFormat.Q4_K,
        GgmlType.Q6_K => WeightFormat.Q6_K,
        _ => throw new InvalidDataException(
            $"{path}: tensor '{tensor.Name}' is {tensor.Type}; this runtime computes with F32, F16, BF16, Q8_0, Q4_0, Q4_K and Q6_K GGUF tensors"),
    };

    private static GgufTensorInfo Tensor(GgufReader gguf, string name) => gguf.TryGetTensor(name, out var t)
        ? t
        : throw new InvalidDataException($"{gguf.Path}: no tensor '{name}'");

    private static GgufValue Key(GgufReader gguf, string key) => gguf.Metadata.TryGetValue(key, out var v)
        ? v
        : throw new InvalidDataException($"{gguf.Path}: no key '{key}'");
}

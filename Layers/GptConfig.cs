namespace LoraRuntime.Layers;

/// <summary>The normalisation of a block: GPT-2's LayerNorm (weight and bias) or Llama's RMSNorm (weight only).</summary>
public enum NormKind
{
    /// <summary>(x − mean)/σ ⊙ w + b.</summary>
    LayerNorm,
    /// <summary>x/rms(x) ⊙ w.</summary>
    RmsNorm,
}

/// <summary>The feed-forward block: GPT-2's proj(GELU(fc x)) or Llama's down(silu(gate x) ⊙ up x).</summary>
public enum MlpKind
{
    /// <summary>fc [I, C], tanh GELU, proj [C, I].</summary>
    Gelu,
    /// <summary>gate and up [I, C] side by side as one projection [2I, C], silu(gate) ⊙ up, down [C, I].</summary>
    GatedSilu,
}

/// <summary>How rotary frequencies are scaled for contexts past the trained one (Hugging Face's <c>rope_type</c>).</summary>
public enum RopeScaling
{
    /// <summary>θ_i = base^(−2i/d).</summary>
    None,
    /// <summary>Positions divided by the factor (position interpolation).</summary>
    Linear,
    /// <summary>NTK-aware: the base grows with the sequence past the trained context.</summary>
    Dynamic,
    /// <summary>Llama 3.1's: low frequencies divided by the factor, high ones kept, a smooth ramp between.</summary>
    Llama3,
    /// <summary>YaRN: a per-frequency ramp between interpolation and extrapolation, and an attention factor.</summary>
    Yarn,
}

/// <summary>
/// Rotary position embeddings in Hugging Face's rotate-half convention: the first ⌊HS·<see cref="PartialFactor"/>⌋
/// dimensions of each q and k head are rotated by position·θ_i, θ_i = <see cref="Theta"/>^(−2i/d), scaled as
/// <see cref="Scaling"/> says.
/// </summary>
public sealed record RotaryOptions
{
    /// <summary>The base of the frequencies (<c>rope_theta</c>).</summary>
    public double Theta { get; init; } = 10000;

    /// <summary>The fraction of each head rotated (<c>partial_rotary_factor</c>).</summary>
    public double PartialFactor { get; init; } = 1;

    /// <summary>The scaling (<c>rope_scaling.rope_type</c>).</summary>
    public RopeScaling Scaling { get; init; } = RopeScaling.None;

    /// <summary>The scaling's factor.</summary>
    public double Factor { get; init; } = 1;

    /// <summary>The context the model was trained with before scaling (<c>original_max_position_embeddings</c>).</summary>
    public int OriginalMaxPositions { get; init; } = 2048;

    /// <summary>Llama 3's <c>low_freq_factor</c>.</summary>
    public double LowFrequencyFactor { get; init; } = 1;

    /// <summary>Llama 3's <c>high_freq_factor</c>.</summary>
    public double HighFrequencyFactor { get; init; } = 4;

    /// <summary>YaRN's <c>beta_fast</c>.</summary>
    public double BetaFast { get; init; } = 32;

    /// <summary>YaRN's <c>beta_slow</c>.</summary>
    public double BetaSlow { get; init; } = 1;

    /// <summary>YaRN's <c>attention_factor</c> (null: 0.1·ln(factor) + 1).</summary>
    public double? AttentionFactor { get; init; }

    /// <summary>
    /// llama.cpp's rope_freqs: each θ_i divided by its factor (d/2 of them), after <see cref="Scaling"/>; null: none. A
    /// GGUF file carries Llama 3's scaling this way (the factors its converter computes from rope_scaling), so a model
    /// read from one rotates exactly as the checkpoint it was made from.
    /// </summary>
    public IReadOnlyList<double>? FrequencyFactors { get; init; }
}

/// <summary>
/// The shape of a decoder-only transformer: vocabulary V, L blocks of NH heads over C channels, context T ≤ BlockSize,
/// and the options that make it GPT-2 (the defaults) or a Llama-family model (RMSNorm, rotary positions, a gated SiLU
/// MLP, grouped-query attention, an explicit head size, biases on q/k/v only, an untied head).
/// </summary>
/// <param name="Vocabulary">V.</param>
/// <param name="Layers">L.</param>
/// <param name="Heads">NH.</param>
/// <param name="Channels">C.</param>
/// <param name="BlockSize">The longest context (rows of a learned position embedding; the rotary tables' length).</param>
/// <param name="LayerNormEpsilon">ε of every norm (GPT-2's <c>layer_norm_epsilon</c>, Llama's <c>rms_norm_eps</c>).</param>
public sealed record GptConfig(int Vocabulary, int Layers = 4, int Heads = 4, int Channels = 128, int BlockSize = 64, float LayerNormEpsilon = 1e-5f)
{
    /// <summary>
    /// The linear layers held as two rank-K factors (a model compressed by <c>lora compress</c>), by module path
    /// ("blocks.0.mlp.fc") with their K; empty for a dense model.
    /// </summary>
    public IReadOnlyDictionary<string, int> FactoredRanks { get; init; } = new Dictionary<string, int>();

    /// <summary>The norm of the blocks and the final one.</summary>
    public NormKind Norm { get; init; } = NormKind.LayerNorm;

    /// <summary>The feed-forward block.</summary>
    public MlpKind Mlp { get; init; } = MlpKind.Gelu;

    /// <summary>I, the MLP's hidden width (<c>intermediate_size</c>); null: 4C.</summary>
    public int? IntermediateSize { get; init; }

    /// <summary>KVH, the key/value heads (<c>num_key_value_heads</c>; grouped-query attention); null: NH.</summary>
    public int? KeyValueHeads { get; init; }

    /// <summary>HS, the size of a head (<c>head_dim</c>, Qwen3's NH·HS ≠ C); null: C / NH.</summary>
    public int? HeadSize { get; init; }

    /// <summary>Rotary positions instead of a learned position embedding; null: learned (GPT-2).</summary>
    public RotaryOptions? Rotary { get; init; }

    /// <summary>Biases on the q, k and v projections (GPT-2, Qwen2; <c>attention_bias</c>).</summary>
    public bool QkvBias { get; init; } = true;

    /// <summary>A bias on the attention's output projection (GPT-2; <c>attention_bias</c>).</summary>
    public bool OutputBias { get; init; } = true;

    /// <summary>Biases on the MLP's projections (GPT-2; <c>mlp_bias</c>).</summary>
    public bool MlpBias { get; init; } = true;

    /// <summary>The output head is the token embedding (<c>tie_word_embeddings</c>); else its own [V, C] matrix.</summary>
    public bool TiedHead { get; init; } = true;

    /// <summary>RMS norms of every q and every k head before the rotary embedding (Qwen3's q_norm, k_norm).</summary>
    public bool QkNorm { get; init; }

    /// <summary>KVH.</summary>
    public int KvHeads => KeyValueHeads ?? Heads;

    /// <summary>HS.</summary>
    public int HeadDim => HeadSize ?? Channels / Heads;

    /// <summary>I.</summary>
    public int Hidden => IntermediateSize ?? 4 * Channels;

    /// <summary>Equal shapes: the fields, and the factored ranks by content (a record compares the dictionary by reference).</summary>
    public bool Equals(GptConfig? other) =>
        other is not null && Vocabulary == other.Vocabulary && Layers == other.Layers && Heads == other.Heads && Channels == other.Channels
        && BlockSize == other.BlockSize && LayerNormEpsilon.Equals(other.LayerNormEpsilon) && Norm == other.Norm && Mlp == other.Mlp
        && Hidden == other.Hidden && KvHeads == other.KvHeads && HeadDim == other.HeadDim && Equals(Rotary, other.Rotary)
        && QkvBias == other.QkvBias && OutputBias == other.OutputBias && MlpBias == other.MlpBias && TiedHead == other.TiedHead && QkNorm == other.QkNorm
        && FactoredRanks.Count == other.FactoredRanks.Count
        && FactoredRanks.All(kv => other.FactoredRanks.TryGetValue(kv.Key, out int rank) && rank == kv.Value);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(HashCode.Combine(Vocabulary, Layers, Heads, Channels, BlockSize, LayerNormEpsilon),
        Norm, Mlp, Hidden, KvHeads, HeadDim, Rotary, FactoredRanks.Count);

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first inconsistent field.</summary>
    public void Validate()
    {
        Guard.Positive(Vocabulary, nameof(Vocabulary));
        Guard.Positive(Layers, nameof(Layers));
        Guard.Positive(Heads, nameof(Heads));
        Guard.Positive(Channels, nameof(Channels));
        Guard.Positive(BlockSize, nameof(BlockSize));
        if (HeadSize is null && Channels % Heads != 0)
            throw new ArgumentException($"{nameof(Channels)} = {Channels} must be a multiple of {nameof(Heads)} = {Heads} (or give {nameof(HeadSize)})", nameof(Channels));
        if (HeadSize is { } hs) Guard.Positive(hs, nameof(HeadSize));
        if (IntermediateSize is { } i) Guard.Positive(i, nameof(IntermediateSize));
        if (KvHeads < 1 || Heads % KvHeads != 0)
            throw new ArgumentException($"{nameof(KeyValueHeads)}: expected KVH ≥ 1 dividing {nameof(Heads)} = {Heads}; got {KvHeads}", nameof(KeyValueHeads));
        if (!(LayerNormEpsilon > 0) || !float.IsFinite(LayerNormEpsilon))
            throw new ArgumentOutOfRangeException(nameof(LayerNormEpsilon), LayerNormEpsilon, $"{nameof(LayerNormEpsilon)}: expected a finite value > 0");
        if (!Enum.IsDefined(Norm)) throw new ArgumentOutOfRangeException(nameof(Norm), Norm, $"{nameof(Norm)}: expected LayerNorm or RmsNorm");
        if (!Enum.IsDefined(Mlp)) throw new ArgumentOutOfRangeException(nameof(Mlp), Mlp, $"{nameof(Mlp)}: expected Gelu or GatedSilu");
        if (Rotary is { } r) RotaryTables.Validate(r, HeadDim, BlockSize);
        foreach (var (layer, rank) in FactoredRanks)
            if (rank < 1) throw new ArgumentException($"{nameof(FactoredRanks)}: the rank K of {layer} must be ≥ 1; got {rank}", nameof(FactoredRanks));
        // Every weight matrix is indexed with int: each must hold fewer than 2³¹ elements (sizes in double: no overflow).
        double q = (double)Heads * HeadDim, kv = (double)KvHeads * HeadDim;
        foreach (var (name, elements) in new[]
        {
            ($"{nameof(Vocabulary)} × {nameof(Channels)} (the embedding)", (double)Vocabulary * Channels),
            ($"{nameof(BlockSize)} × {nameof(Channels)} (the position table)", (double)BlockSize * Channels),
            ($"{nameof(Channels)} × (q + 2 kv) (the attention projection)", Channels * (q + 2 * kv)),
            ($"{nameof(Channels)} × {nameof(IntermediateSize)} × 2 (the MLP)", 2.0 * Channels * Hidden),
        })
            if (elements >= int.MaxValue)
                throw new ArgumentException($"{name} = {elements:0} elements: a weight matrix may hold at most {int.MaxValue:N0}", name.Split(' ')[0]);
    }

    /// <summary>The number of weights, in double (no overflow for any field values).</summary>
    internal double ParameterCount()
    {
        double c = Channels, q = (double)Heads * HeadDim, kv = (double)KvHeads * HeadDim, hidden = Hidden, v = Vocabulary;
        double mlp = (Mlp == MlpKind.GatedSilu ? 3 : 2) * c * hidden;
        double block = c * (q + 2 * kv) + q * c + mlp + 4 * c;
        return v * c * (TiedHead ? 1 : 2) + (Rotary is null ? (double)BlockSize * c : 0) + Layers * block + 2 * c;
    }

    /// <summary>
    /// About how many bytes a model of this shape takes with <paramref name="maxBatch"/> sequences: its weights (with
    /// gradients and Adam's two moments when <paramref name="trainParameters"/>), their packed inference copy, and the
    /// activations (every layer's when <paramref name="training"/>, one layer's otherwise) — an estimate to refuse
    /// what cannot fit before anything is allocated, not an exact count.
    /// </summary>
    internal double EstimateBytes(int maxBatch, bool training, bool trainParameters, bool stored = false)
    {
        // In floats: values, gradients and two moments when trained; values and the packed snapshot when frozen; a
        // stored base at most 2 bytes a weight.
        double weights = ParameterCount() * (trainParameters ? 4 : stored ? 0.5 : 2);
        double c = Channels, t = BlockSize, rows = (double)maxBatch * t;
        double perLayer = rows * (12 * c + 3 * Hidden) + (double)maxBatch * Heads * t * t * 2;
        // Activations are reserved for training; an inference model takes a whole-sequence pass's on demand (one layer's
        // worth is counted for the serving steps' own buffers).
        double activations = perLayer * (training ? Layers : 1) + rows * Vocabulary * (training ? 2 : 0);
        return 4 * (weights + activations);
    }
}

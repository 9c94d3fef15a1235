using LoraRuntime.Layers.Serving;

namespace LoraRuntime.Layers.Inference;

/// <summary>
/// One sequence's part of an <see cref="InferenceStep"/>: <see cref="Count"/> tokens at positions
/// [<see cref="Start"/>, <see cref="Start"/> + <see cref="Count"/>) of cache slot <see cref="Slot"/>, laid out from token
/// <see cref="TokenStart"/> of the step; the logits of its last token go to row <see cref="OutputRow"/>.
/// </summary>
internal readonly record struct StepSequence(int Slot, int Start, int Count, int TokenStart, int OutputRow);

/// <summary>
/// The context a serving step carries through the model's layers (<see cref="GptModel.Infer"/>): the step's tokens
/// (ids and positions, sequence by sequence), the KV cache they attend to, the rows' adapters (<see cref="Lora"/>), and
/// the scratch rows every layer's inference pass works in — shared by the layers, since they run one after another. All
/// of it is taken at construction for up to <see cref="MaxTokens"/> tokens and <see cref="MaxSequences"/> sequences:
/// a step at a steady shape allocates nothing. One step at a time.
/// </summary>
internal sealed class InferenceStep : IDisposable
{
    private readonly List<IDisposable> _owned = [];
    private readonly StepSequence[] _sequences;
    private readonly int[] _hostIds, _hostPositions;
    private RowBuffer? _factors;

    public InferenceStep(GptModel model, KvCache cache, int maxTokens, int maxRank)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(cache);
        Backend = model.Parameters.Backend;
        Cache = cache;
        MaxTokens = maxTokens;
        MaxSequences = cache.Slots;
        var config = model.Config;
        int n = maxTokens, s = cache.Slots, c = config.Channels, hs = config.HeadDim, q = config.Heads * hs, kv = config.KvHeads * hs;
        int hidden = config.Hidden, fused = config.Mlp == MlpKind.GatedSilu ? 2 * hidden : hidden;
        try
        {
            Ids = Rows(n, 1, DType.I32);
            Positions = Rows(n, 1, DType.I32);
            (X, Embedded, Ln, Attention, Residual, Mlp) = (Rows(n, c), Rows(n, c), Rows(n, c), Rows(n, c), Rows(n, c), Rows(n, c));
            (Mean, Rstd, Qkv, Y) = (Rows(Math.Max(n, s), 1), Rows(Math.Max(n, s), 1), Rows(n, q + 2 * kv), Rows(n, q));
            (Hidden, Activated) = (Rows(n, fused), Rows(n, hidden));
            (QueryNormRstd, KeyNormRstd) = (Rows(n, config.QkNorm ? config.Heads : 1), Rows(n, config.QkNorm ? config.KvHeads : 1));
            (Last, LastNormed, Logits) = (Rows(s, c), Rows(s, c), Rows(s, config.Vocabulary));
            Scores = Backend.Zeros(DType.F32, new Shape(config.Heads * cache.MaxSequence));
            _owned.Add(Scores);
            Lora = new SegmentedLora(Backend, n, maxRank, s, model.MaxModulesPerLinear);
            _owned.Add(Lora);
        }
        catch
        {
            Dispose();
            throw;
        }
        AttentionRows = new DecodeAttentionRow[n];
        _sequences = new StepSequence[s];
        _hostIds = new int[n];
        _hostPositions = new int[n];
    }

    public Backend Backend { get; }

    /// <summary>The keys and values every attention layer reads and extends.</summary>
    public KvCache Cache { get; }

    /// <summary>The most tokens a step carries.</summary>
    public int MaxTokens { get; }

    /// <summary>The most sequences a step carries (the cache's slots).</summary>
    public int MaxSequences { get; }

    /// <summary>N, the tokens of this step.</summary>
    public int Tokens { get; private set; }

    /// <summary>This step's sequences, in token order.</summary>
    public ReadOnlySpan<StepSequence> Sequences => _sequences.AsSpan(0, SequenceCount);

    /// <summary>How many sequences this step carries.</summary>
    public int SequenceCount { get; private set; }

    /// <summary>The rows' adapters: the segmented LoRA deltas every projection adds.</summary>
    public SegmentedLora Lora { get; }

    /// <summary>Token ids and positions [N] (int32).</summary>
    public RowBuffer Ids { get; }

    /// <inheritdoc cref="Ids"/>
    public RowBuffer Positions { get; }

    /// <summary>The residual stream [N, C] that each block updates in place.</summary>
    public RowBuffer X { get; }

    /// <summary>Scratch [N, C]: the position embeddings; each block's norm, attention, residual and MLP outputs.</summary>
    public RowBuffer Embedded { get; }

    /// <inheritdoc cref="Embedded"/>
    public RowBuffer Ln { get; }

    /// <inheritdoc cref="Embedded"/>
    public RowBuffer Attention { get; }

    /// <inheritdoc cref="Embedded"/>
    public RowBuffer Residual { get; }

    /// <inheritdoc cref="Embedded"/>
    public RowBuffer Mlp { get; }

    /// <summary>The heads' outputs merged into rows [N, NH·HS].</summary>
    public RowBuffer Y { get; }

    /// <summary>A layer norm's per-row statistics [max(N, S)].</summary>
    public RowBuffer Mean { get; }

    /// <inheritdoc cref="Mean"/>
    public RowBuffer Rstd { get; }

    /// <summary>The attention's packed q | k | v rows [N, (NH + 2·KVH)·HS].</summary>
    public RowBuffer Qkv { get; }

    /// <summary>The MLP's hidden rows before the activation ([N, I], or [N, 2I] for gate | up) and after it ([N, I]).</summary>
    public RowBuffer Hidden { get; }

    /// <inheritdoc cref="Hidden"/>
    public RowBuffer Activated { get; }

    /// <summary>The q and k heads' norm statistics [N, NH] and [N, KVH] (Qwen3's q/k norms; one column otherwise).</summary>
    public RowBuffer QueryNormRstd { get; }

    /// <inheritdoc cref="QueryNormRstd"/>
    public RowBuffer KeyNormRstd { get; }

    /// <summary>Each sequence's last token [S, C], normed, and its logits [S, V].</summary>
    public RowBuffer Last { get; }

    /// <inheritdoc cref="Last"/>
    public RowBuffer LastNormed { get; }

    /// <inheritdoc cref="Last"/>
    public RowBuffer Logits { get; }

    /// <summary>The composed attention path's scores [NH · T] (<see cref="Backend.CachedAttention"/>).</summary>
    public Tensor Scores { get; }

    /// <summary>One attention query per token, refilled by each attention layer.</summary>
    public DecodeAttentionRow[] AttentionRows { get; }

    /// <summary>Starts a step: forgets the sequences and adapter groups of the last.</summary>
    public void Clear()
    {
        SequenceCount = 0;
        Tokens = 0;
        Lora.Clear();
    }

    /// <summary>
    /// Appends a sequence's <paramref name="tokens"/> at positions from <paramref name="start"/> of cache slot
    /// <paramref name="slot"/>, run with <paramref name="adapter"/> at <paramref name="scale"/> times its scale; its
    /// logits go to row <paramref name="outputRow"/>. The caller has validated everything.
    /// </summary>
    public void Add(int slot, int start, ReadOnlySpan<int> tokens, ServedAdapter? adapter, float scale, int outputRow)
    {
        int at = Tokens, count = tokens.Length;
        _sequences[SequenceCount++] = new StepSequence(slot, start, count, at, outputRow);
        tokens.CopyTo(_hostIds.AsSpan(at));
        for (int t = 0; t < count; t++) _hostPositions[at + t] = start + t;
        Lora.Add(adapter, scale, at, count);
        Tokens = at + count;
    }

    /// <summary>Copies the step's ids and positions to the device.</summary>
    public void Upload()
    {
        int n = Tokens;
        Backend.Upload(Ids.Rows(n), _hostIds.AsSpan(0, n));
        Backend.Upload(Positions.Rows(n), _hostPositions.AsSpan(0, n));
    }

    /// <summary>
    /// Scratch [N, <paramref name="width"/>] for a factored projection's intermediate, grown (once) to the widest asked
    /// for: a steady step allocates nothing.
    /// </summary>
    public RowBuffer Factors(int width)
    {
        if (_factors is null || _factors.Width < width)
        {
            _factors?.Dispose();
            _factors = new RowBuffer(Backend, MaxTokens, width);
        }
        return _factors;
    }

    public void Dispose()
    {
        foreach (var d in _owned) d.Dispose();
        _owned.Clear();
        _factors?.Dispose();
        _factors = null;
    }

    private RowBuffer Rows(int maxRows, int width, DType dtype = DType.F32)
    {
        var b = new RowBuffer(Backend, maxRows, width, dtype);
        _owned.Add(b);
        return b;
    }
}

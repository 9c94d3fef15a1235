using LoraRuntime.Layers.Inference;

namespace LoraRuntime.Layers;

/// <summary>The shape of a GPT: vocabulary V, L blocks of NH heads over C channels, context T ≤ BlockSize.</summary>
/// <param name="Vocabulary">V.</param>
/// <param name="Layers">L.</param>
/// <param name="Heads">NH; must divide <paramref name="Channels"/>.</param>
/// <param name="Channels">C.</param>
/// <param name="BlockSize">The longest context (rows of the position embedding).</param>
/// <param name="LayerNormEpsilon">ε of every layer norm (GPT-2's <c>layer_norm_epsilon</c>, 1e-5).</param>
public sealed record GptConfig(int Vocabulary, int Layers = 4, int Heads = 4, int Channels = 128, int BlockSize = 64, float LayerNormEpsilon = 1e-5f)
{
    /// <summary>
    /// The linear layers held as two rank-K factors (a model compressed by <c>lora compress</c>), by module path
    /// ("blocks.0.mlp.fc") with their K; empty for a dense model.
    /// </summary>
    public IReadOnlyDictionary<string, int> FactoredRanks { get; init; } = new Dictionary<string, int>();

    /// <summary>Equal shapes: the fields, and the factored ranks by content (a record compares the dictionary by reference).</summary>
    public bool Equals(GptConfig? other) =>
        other is not null && Vocabulary == other.Vocabulary && Layers == other.Layers && Heads == other.Heads && Channels == other.Channels
        && BlockSize == other.BlockSize && LayerNormEpsilon.Equals(other.LayerNormEpsilon) && FactoredRanks.Count == other.FactoredRanks.Count
        && FactoredRanks.All(kv => other.FactoredRanks.TryGetValue(kv.Key, out int rank) && rank == kv.Value);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Vocabulary, Layers, Heads, Channels, BlockSize, LayerNormEpsilon, FactoredRanks.Count);

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first inconsistent field.</summary>
    public void Validate()
    {
        Guard.Positive(Vocabulary, nameof(Vocabulary));
        Guard.Positive(Layers, nameof(Layers));
        Guard.Positive(Heads, nameof(Heads));
        Guard.Positive(Channels, nameof(Channels));
        Guard.Positive(BlockSize, nameof(BlockSize));
        if (Channels % Heads != 0)
            throw new ArgumentException($"{nameof(Channels)} = {Channels} must be a multiple of {nameof(Heads)} = {Heads}", nameof(Channels));
        if (!(LayerNormEpsilon > 0) || !float.IsFinite(LayerNormEpsilon))
            throw new ArgumentOutOfRangeException(nameof(LayerNormEpsilon), LayerNormEpsilon, $"{nameof(LayerNormEpsilon)}: expected a finite value > 0");
        foreach (var (layer, rank) in FactoredRanks)
            if (rank < 1) throw new ArgumentException($"{nameof(FactoredRanks)}: the rank K of {layer} must be ≥ 1; got {rank}", nameof(FactoredRanks));
    }
}

/// <summary>
/// A GPT (llm.c's GPT-2 without dropout): token and position embeddings, a <see cref="TransformerStack"/> of pre-LN
/// blocks, a final layer norm, and an LM head tied to the token embedding. Parameters and gradients are each one
/// reservation (<see cref="ParameterSet"/>), activations another (<see cref="Activations"/>), all taken at
/// construction for a maximum batch and <see cref="GptConfig.BlockSize"/>: a training step at a steady shape
/// allocates nothing. A model built with <c>training: false</c>, or whose parameters are frozen for LoRA, writes no
/// parameter gradients. Not thread-safe: one pass at a time.
/// </summary>
internal sealed class GptModel : ILinearHost, IDisposable
{
    private readonly ActivationBuffer _tok, _pos, _x0, _h, _ln, _logits, _probs, _losses;
    private readonly ActivationBuffer _dLosses, _dLogits, _dLn, _dH, _dX0;
    private readonly Tensor _positionIds; // [maxB·T] int32: 0..T−1 per row, refilled when (B, T) change
    private readonly int[] _hostPositions;
    private readonly float[] _hostLosses;
    private readonly GemmProblem[] _headGradients = new GemmProblem[2]; // dLn and the tied table's gradient, one grouped call
    private Tensor? _positionView;
    private int _positionBatch, _positionTime;
    private Tensor? _lastIds, _lastTargets;
    private PackedMatrix? _head; // the inference snapshot of the tied head: wteᵀ [C, V]

    /// <summary>
    /// Declares and reserves a model for batches of up to <paramref name="maxBatch"/> sequences. With
    /// <paramref name="trainParameters"/> the parameters get gradients (pre-training); without, they are frozen
    /// (inference, or LoRA fine-tuning when <paramref name="training"/> keeps the activation gradients).
    /// </summary>
    public GptModel(Backend backend, GptConfig config, int maxBatch, bool training = true, bool trainParameters = true)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Guard.Positive(maxBatch, nameof(maxBatch));
        if (trainParameters && !training)
            throw new ArgumentException("trainParameters needs training: parameter gradients need the activation gradients", nameof(trainParameters));
        Config = config;
        int c = config.Channels, v = config.Vocabulary;
        Parameters = new ParameterSet(backend, "gpt") { FactoredRanks = config.FactoredRanks };
        Activations = new Activations(backend, maxBatch, config.BlockSize, training);
        try
        {
            TokenEmbedding = new Embedding(Parameters, "wte", v, c);
            PositionEmbedding = new Embedding(Parameters, "wpe", config.BlockSize, c);
            Stack = new TransformerStack(Parameters, Activations, config.Layers, c, config.Heads, config.LayerNormEpsilon);
            FinalNorm = new LayerNorm(Parameters, Activations, "ln_f", c, config.LayerNormEpsilon);
            foreach (string layer in config.FactoredRanks.Keys)
                if (!Stack.LinearTargets.Any(t => t.Path == layer && !t.IsSlice))
                    throw new ArgumentException(
                        $"config: FactoredRanks names '{layer}', which is not a linear layer of the model (e.g. {Stack.LinearTargets.First().Path})", nameof(config));
            Linears = Stack.Blocks.SelectMany(b => new[] { b.Attention.Qkv, b.Attention.Out, b.Mlp.Fc, b.Mlp.Proj }).ToArray();
            for (int i = 0; i < Linears.Count; i++) Linears[i].Index = i;
            MaxModulesPerLinear = Stack.LinearTargets.GroupBy(t => t.Linear).Max(g => g.Count());
            Func<int, int, Shape> rows = (b, t) => new Shape(b, t, c);
            Func<int, int, Shape> vocab = (b, t) => new Shape(b, t, v);
            Func<int, int, Shape> positions = (b, t) => new Shape(b, t);
            _tok = Activations.Add("wte.out", rows);
            _pos = Activations.Add("wpe.out", rows);
            _x0 = Activations.Add("embeddings", rows);
            _h = Activations.Add("blocks.out", rows);
            _ln = Activations.Add("ln_f.out", rows);
            _logits = Activations.Add("logits", vocab);
            _probs = Activations.Add("probs", vocab);
            _losses = Activations.Add("losses", positions);
            _dLosses = Activations.AddGradient("dlosses", positions);
            _dLogits = Activations.AddGradient("dlogits", vocab);
            _dLn = Activations.AddGradient("ln_f.dout", rows);
            _dH = Activations.AddGradient("blocks.dout", rows);
            _dX0 = Activations.AddGradient("embeddings.dout", rows);
            Parameters.Reserve(withGradients: trainParameters);
            Activations.Reserve();
            _positionIds = backend.Allocate(DType.I32, new Shape(maxBatch * config.BlockSize));
            _hostPositions = new int[maxBatch * config.BlockSize];
            _hostLosses = new float[maxBatch * config.BlockSize];
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The architecture.</summary>
    public GptConfig Config { get; }

    /// <summary>Every parameter ("wte.weight", "blocks.0.attn.qkv.weight", …) in one reservation.</summary>
    public ParameterSet Parameters { get; }

    /// <inheritdoc/>
    public Activations Activations { get; }

    /// <summary>The token embedding [V, C], also the LM head.</summary>
    public Embedding TokenEmbedding { get; }

    /// <summary>The position embedding [BlockSize, C].</summary>
    public Embedding PositionEmbedding { get; }

    /// <summary>The transformer blocks.</summary>
    public TransformerStack Stack { get; }

    /// <summary>The final layer norm.</summary>
    public LayerNorm FinalNorm { get; }

    /// <inheritdoc/>
    public IEnumerable<LinearTarget> LinearTargets => Stack.LinearTargets;

    /// <summary>The projections in forward order; each one's <see cref="Linear.Index"/> is its position here.</summary>
    public IReadOnlyList<Linear> Linears { get; } = [];

    /// <summary>The most LoRA targets one projection has (the fused QKV: whole, q, k, v).</summary>
    public int MaxModulesPerLinear { get; }

    private Backend Backend => Parameters.Backend;

    /// <summary>
    /// Initialisation from <paramref name="seed"/>: embeddings and every linear weight N(0, 0.02²), biases 0, layer norms
    /// 1 and 0 — the recipe of ../shared/anchors/torch_gpt_char.py. <paramref name="scaleResidual"/> scales the
    /// projections into the residual stream by 1/√(2L) as GPT-2 does.
    /// </summary>
    public void Initialize(ulong seed, bool scaleResidual = false)
    {
        Stack.Initialize(seed, scaleResidual);
        FinalNorm.InitializeDefaults();
        foreach (var table in new[] { TokenEmbedding.Table, PositionEmbedding.Table })
            table.Value.CopyFrom(CounterRandom.Normal(CounterRandom.Seed(seed, table.Name), table.Shape.Length, 0.02));
    }

    /// <summary>
    /// Runs the model on int32 <paramref name="ids"/> [B, T]; the logits [B, T, V] stay in <see cref="Logits"/>. With
    /// <paramref name="targets"/> [B, T] it also computes the cross-entropy and returns its mean (else NaN); a
    /// backward pass may follow.
    /// </summary>
    public float Forward(Tensor ids, Tensor? targets = null)
    {
        var (batch, time) = CheckIds(ids, nameof(ids));
        if (targets is not null)
        {
            var (tb, tt) = CheckIds(targets, nameof(targets));
            if (tb != batch || tt != time)
                throw new ArgumentException($"targets: expected [B, T] = [{batch}, {time}] to match ids; got {targets.Shape}", nameof(targets));
        }
        var backend = Backend;
        Tensor tok = _tok.For(batch, time), pos = _pos.For(batch, time), x0 = _x0.For(batch, time);
        TokenEmbedding.Forward(tok, ids);
        PositionEmbedding.Forward(pos, PositionIds(batch, time));
        backend.Add(x0, tok, pos);
        Tensor h = _h.For(batch, time), ln = _ln.For(batch, time), logits = _logits.For(batch, time);
        Stack.Forward(h, x0);
        FinalNorm.Forward(ln, h);
        backend.MatMul(logits, ln, TokenEmbedding.Table.Value, transB: Transpose.Yes);
        _lastIds = ids;
        _lastTargets = targets;
        if (targets is null) return float.NaN;
        Tensor losses = _losses.For(batch, time);
        backend.CrossEntropyForward(losses, _probs.For(batch, time), logits, targets);
        var host = _hostLosses.AsSpan(0, batch * time);
        backend.Download(losses, host);
        double sum = 0;
        foreach (float l in host) sum += l;
        return (float)(sum / host.Length);
    }

    /// <summary>The logits [B, T, V] of the last forward pass.</summary>
    public Tensor Logits => _lastIds is null
        ? throw new InvalidOperationException("no forward pass has run yet")
        : _logits.For(_lastIds.Shape[0], _lastIds.Shape[1]);

    /// <summary>
    /// Back-propagates the mean loss of the last forward pass (which must have had targets): accumulates into every
    /// trained parameter's gradient (and adapters' gradients). Zero the gradients between steps.
    /// </summary>
    public void Backward()
    {
        if (_lastIds is null || _lastTargets is null)
            throw new InvalidOperationException("Backward needs a forward pass with targets just before");
        if (!Activations.Training)
            throw new InvalidOperationException("this model was built with training: false; build it with training: true to run backward passes");
        int batch = _lastIds.Shape[0], time = _lastIds.Shape[1];
        var backend = Backend;
        Tensor dLosses = _dLosses.For(batch, time), dLogits = _dLogits.For(batch, time);
        backend.Fill(dLosses, 1f / (batch * time));
        backend.Fill(dLogits, 0f);
        backend.CrossEntropyBackward(dLogits, dLosses, _probs.For(batch, time), _lastTargets);
        // Tied head: logits = ln · wteᵀ.
        Tensor ln = _ln.For(batch, time), dLn = _dLn.For(batch, time);
        int rows = batch * time, vocab = Config.Vocabulary, channels = Config.Channels, count = 0;
        _headGradients[count++] = new GemmProblem(dLn, dLogits, TokenEmbedding.Table.Value, rows, channels, vocab);
        if (TokenEmbedding.Table.HasGradient)
            _headGradients[count++] = new GemmProblem(TokenEmbedding.Table.Gradient, dLogits, ln, vocab, channels, rows, Transpose.Yes, beta: 1f);
        backend.GemmGrouped(_headGradients.AsSpan(0, count));
        _headGradients.AsSpan().Clear(); // no tensor kept alive past the call
        Tensor dH = _dH.For(batch, time);
        backend.Fill(dH, 0f);
        FinalNorm.Backward(dH, dLn, _h.For(batch, time));
        // Frozen embeddings (LoRA fine-tuning) need no input gradient: the first block skips computing it, as autograd would.
        if (!TokenEmbedding.Table.HasGradient && !PositionEmbedding.Table.HasGradient)
        {
            Stack.Backward(null, dH, _x0.For(batch, time));
            return;
        }
        Tensor dX0 = _dX0.For(batch, time);
        backend.Fill(dX0, 0f);
        Stack.Backward(dX0, dH, _x0.For(batch, time));
        TokenEmbedding.Backward(dX0, _lastIds);
        PositionEmbedding.Backward(dX0, PositionIds(batch, time));
    }

    /// <summary>
    /// Takes (or retakes) the snapshot that serving steps (<see cref="Infer"/>) compute with: every projection's weight
    /// with its applied adapters folded in, and the tied head, packed for the backend's GEMM
    /// (<see cref="Linear.PackForInference"/>). Call it again after the weights or the adapters change (a merge, a
    /// training step, another active adapter).
    /// </summary>
    public void PrepareInference()
    {
        foreach (var linear in Linears) linear.PackForInference();
        if (_head is null) _head = Backend.PackMatrix(TokenEmbedding.Table.Value, Transpose.Yes);
        else Backend.Repack(_head, TokenEmbedding.Table.Value, Transpose.Yes);
    }

    /// <summary>Bytes of the inference snapshot (none before <see cref="PrepareInference"/>).</summary>
    public long InferenceBytes => (_head?.Bytes ?? 0) + Linears.Sum(l => l.InferenceBytes);

    /// <summary>
    /// Runs a serving step through the model's layers: x = wte[ids] + wpe[positions] for the step's N tokens, every
    /// block's inference pass over the step's KV cache, then for each sequence the logits of its last token,
    /// ln_f(x) · wteᵀ, into <paramref name="logits"/> at the sequence's output row (V values a row). Needs
    /// <see cref="PrepareInference"/> first; the step has been filled and uploaded.
    /// </summary>
    public void Infer(InferenceStep step, Span<float> logits)
    {
        ArgumentNullException.ThrowIfNull(step);
        if (_head is null) throw new InvalidOperationException("Infer needs the inference snapshot: call PrepareInference first");
        var backend = Backend;
        int n = step.Tokens, m = step.SequenceCount, c = Config.Channels, v = Config.Vocabulary;
        Tensor x = step.X.Rows(n), positions = step.Embedded.Rows(n);
        backend.EmbeddingForward(x, step.Ids.Rows(n), TokenEmbedding.Table.Value);
        backend.EmbeddingForward(positions, step.Positions.Rows(n), PositionEmbedding.Table.Value);
        backend.Add(x, x, positions);
        var blocks = Stack.Blocks;
        for (int l = 0; l < blocks.Count; l++) blocks[l].Infer(step, step.X); // an indexed loop: no enumerator on the hot path
        foreach (var s in step.Sequences)
            backend.CopyRows(step.Last.Block, (long)s.OutputRow * c, c, step.X.Block, (long)(s.TokenStart + s.Count - 1) * c, c, 1, c);
        FinalNorm.Infer(step, step.LastNormed, step.Last, m);
        backend.GemmPacked(m, 1f, step.LastNormed.Block, 0, c, _head, 0f, step.Logits.Block, 0, v);
        backend.Download(step.Logits.Rows(m), logits[..(m * v)]);
    }

    /// <summary>Returns every reservation to the pool.</summary>
    public void Dispose()
    {
        foreach (var linear in Linears) linear.ReleaseInference();
        _head?.Dispose();
        Parameters.Dispose();
        Activations.Dispose();
        _positionIds?.Dispose();
    }

    private (int Batch, int Time) CheckIds(Tensor ids, string name)
    {
        ArgumentNullException.ThrowIfNull(ids, name);
        if (ids.DType != DType.I32 || ids.Shape.Rank != 2)
            throw new ArgumentException($"{name}: expected int32 token ids [B, T]; got {ids}", name);
        int batch = ids.Shape[0], time = ids.Shape[1];
        Activations.CheckSize(batch, time, name, ids);
        return (batch, time);
    }

    /// <summary>The [B, T] ids 0..T−1 of each row, rebuilt only when (B, T) change.</summary>
    private Tensor PositionIds(int batch, int time)
    {
        if (_positionView is not null && batch == _positionBatch && time == _positionTime) return _positionView;
        var host = _hostPositions.AsSpan(0, batch * time);
        for (int i = 0; i < host.Length; i++) host[i] = i % time;
        _positionView = _positionIds.View(0, new Shape(batch, time));
        Backend.Upload(_positionView, host);
        (_positionBatch, _positionTime) = (batch, time);
        return _positionView;
    }
}

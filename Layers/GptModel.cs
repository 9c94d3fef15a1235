using LoraRuntime.Layers.Inference;

namespace LoraRuntime.Layers;

/// <summary>
/// A decoder-only transformer (llm.c's GPT-2 without dropout, or a Llama-family model, as its <see cref="GptConfig"/>
/// says): a token embedding, a learned position embedding or rotary tables, a <see cref="TransformerStack"/> of pre-norm
/// blocks, a final norm, and an LM head tied to the token embedding or its own. Parameters and gradients are each one
/// reservation (<see cref="ParameterSet"/>), activations another (<see cref="Activations"/>), all taken at
/// construction for a maximum batch and <see cref="GptConfig.BlockSize"/>: a training step at a steady shape
/// allocates nothing. A model built with <c>training: false</c>, or whose parameters are frozen for LoRA, writes no
/// parameter gradients. Not thread-safe: one pass at a time.
/// </summary>
internal sealed class GptModel : ILinearHost, IDisposable
{
    private readonly ActivationBuffer _tok, _pos, _x0, _h, _ln, _logits, _probs, _losses;
    private readonly ActivationBuffer _dLosses, _dLogits, _dLn, _dH, _dX0;
    private readonly TrainingPositions _positions;
    private readonly RotaryTables? _rotary;
    private readonly float[] _hostLosses;
    private readonly GemmProblem[] _headGradients = new GemmProblem[2]; // dLn and the head's gradient, one grouped call
    private Tensor? _lastIds, _lastTargets;
    private bool _logitsSpent;
    private PackedMatrix? _head; // the inference snapshot of the head: Wᵀ [C, V]

    /// <summary>
    /// Declares and reserves a model for batches of up to <paramref name="maxBatch"/> sequences. With
    /// <paramref name="trainParameters"/> the parameters get gradients (pre-training); without, they are frozen
    /// (inference, or LoRA fine-tuning when <paramref name="training"/> keeps the activation gradients).
    /// </summary>
    /// <remarks>
    /// <paramref name="storage"/> gives each projection's, the token embedding's and an untied head's weight its
    /// format (by parameter name and columns); weights in a stored format are frozen, so it needs
    /// <paramref name="trainParameters"/> off.
    /// </remarks>
    public GptModel(Backend backend, GptConfig config, int maxBatch, bool training = true, bool trainParameters = true,
        Func<string, int, WeightFormat>? storage = null)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Guard.Positive(maxBatch, nameof(maxBatch));
        ModelMemory.Check(backend, config, maxBatch, training, trainParameters, storage);
        if (trainParameters && !training)
            throw new ArgumentException("trainParameters needs training: parameter gradients need the activation gradients", nameof(trainParameters));
        Config = config;
        int c = config.Channels, v = config.Vocabulary;
        Parameters = new ParameterSet(backend, "gpt") { FactoredRanks = config.FactoredRanks, Storage = storage };
        Activations = new Activations(backend, maxBatch, config.BlockSize, training);
        try
        {
            _positions = new TrainingPositions(backend, maxBatch, config.BlockSize);
            TokenEmbedding = new Embedding(Parameters, "wte", v, c, storable: true);
            if (config.Rotary is { } rotary) _rotary = new RotaryTables(backend, rotary, config.HeadDim, config.BlockSize, _positions);
            else PositionEmbedding = new Embedding(Parameters, "wpe", config.BlockSize, c);
            Stack = new TransformerStack(Parameters, Activations, config, _rotary);
            FinalNorm = INorm.Create(config.Norm, Parameters, Activations, "ln_f", c, config.LayerNormEpsilon);
            if (config.TiedHead)
            {
                StoredHead = TokenEmbedding.Stored;
                if (StoredHead is null) _headWeight = TokenEmbedding.Table;
            }
            else if (Parameters.FormatOf("lm_head.weight", c) is var head && head != WeightFormat.F32)
                StoredHead = Parameters.AddStored("lm_head.weight", head, v, c);
            else _headWeight = Parameters.Add("lm_head.weight", v, c);
            if (trainParameters && Parameters.Stored.Count > 0)
                throw new ArgumentException(
                    $"storage: {Parameters.Stored.Count} weights are kept in a stored format ({Parameters.Stored.First().Value.Format}, …), which are frozen; trained parameters must be float32", nameof(storage));
            foreach (string layer in config.FactoredRanks.Keys)
                if (!Stack.LinearTargets.Any(t => t.Path == layer && !t.IsSlice))
                    throw new ArgumentException(
                        $"config: FactoredRanks names '{layer}', which is not a linear layer of the model (e.g. {Stack.LinearTargets.First().Path})", nameof(config));
            Linears = Stack.Blocks.SelectMany(b => b.Linears).ToArray();
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
            // The logits are spent once the loss's probabilities exist: their gradient takes their memory ([B, T, V], the
            // largest buffer of a small model's step).
            _dLogits = Activations.AddGradientOver(_logits, "dlogits", vocab);
            _dLn = Activations.AddGradient("ln_f.dout", rows);
            _dH = Activations.AddGradient("blocks.dout", rows);
            _dX0 = Activations.AddGradient("embeddings.dout", rows);
            Parameters.Reserve(withGradients: trainParameters);
            Activations.Reserve();
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

    /// <summary>The learned position embedding [BlockSize, C]; null with rotary positions.</summary>
    public Embedding? PositionEmbedding { get; }

    private readonly Parameter? _headWeight;

    /// <summary>The output head [V, C] in float32: the token embedding's table when tied, else "lm_head.weight".</summary>
    public Parameter HeadWeight => _headWeight ?? throw new InvalidOperationException(
        $"the head is kept as {StoredHead!.Format} (a frozen low-precision base): it has no float32 weight");

    /// <summary>The output head kept in a stored format (the token embedding's when tied); null for a float32 head.</summary>
    public QuantizedMatrix? StoredHead { get; }

    /// <summary>The transformer blocks.</summary>
    public TransformerStack Stack { get; }

    /// <summary>The final norm.</summary>
    public INorm FinalNorm { get; }

    /// <inheritdoc/>
    public IEnumerable<LinearTarget> LinearTargets => Stack.LinearTargets;

    /// <summary>The projections in forward order; each one's <see cref="Linear.Index"/> is its position here.</summary>
    public IReadOnlyList<Linear> Linears { get; } = [];

    /// <summary>The most LoRA targets one projection has (the fused QKV: whole, q, k, v).</summary>
    public int MaxModulesPerLinear { get; }

    private Backend Backend => Parameters.Backend;

    /// <summary>
    /// bitsandbytes' double quantization of the NF4 weights this model encoded from float values
    /// (<see cref="WeightStorage.DoubleQuantized"/>), each Hugging Face module's blocks apart — a Llama-family model's
    /// fused q/k/v and gate/up rows as the separate projections PEFT's QLoRA quantizes — so that the base holds the values
    /// a QLoRA run with <c>bnb_4bit_use_double_quant</c> trained over. Load-time work, once.
    /// </summary>
    public void DoubleQuantizeNf4() => Parameters.DoubleQuantizeNf4(Config.Mlp == MlpKind.GatedSilu
        ? LlamaCheckpoint.Pieces(this).Select(p => (p.Ours, p.Row, p.Rows))
        : []);

    /// <summary>
    /// Initialisation from <paramref name="seed"/>: embeddings and every linear weight N(0, 0.02²), biases 0, layer norms
    /// 1 and 0 — the recipe of ../shared/anchors/torch_gpt_char.py. <paramref name="scaleResidual"/> scales the
    /// projections into the residual stream by 1/√(2L) as GPT-2 does.
    /// </summary>
    public void Initialize(ulong seed, bool scaleResidual = false)
    {
        Stack.Initialize(seed, scaleResidual);
        FinalNorm.InitializeDefaults();
        var tables = new List<string> { "wte.weight" };
        if (PositionEmbedding is not null) tables.Add("wpe.weight");
        if (!Config.TiedHead) tables.Add("lm_head.weight");
        foreach (string table in tables)
            Parameters.WriteRows(table, 0, CounterRandom.Normal(CounterRandom.Seed(seed, table), Parameters.ShapeOf(table).Length, 0.02));
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
        Tensor x0 = _x0.For(batch, time);
        if (PositionEmbedding is null) TokenEmbedding.Forward(x0, ids); // rotary positions act inside attention
        else
        {
            Tensor tok = _tok.For(batch, time), pos = _pos.For(batch, time);
            TokenEmbedding.Forward(tok, ids);
            PositionEmbedding.Forward(pos, _positions.For(batch, time));
            backend.Add(x0, tok, pos);
        }
        Tensor h = _h.For(batch, time), ln = _ln.For(batch, time), logits = _logits.For(batch, time);
        Stack.Forward(h, x0);
        FinalNorm.Forward(ln, h);
        if (StoredHead is not null) backend.MatMulQuantized(logits, ln, StoredHead);
        else backend.MatMul(logits, ln, HeadWeight.Value, transB: Transpose.Yes);
        _lastIds = ids;
        _lastTargets = targets;
        _logitsSpent = false;
        if (targets is null) return float.NaN;
        Tensor losses = _losses.For(batch, time);
        backend.CrossEntropyForward(losses, _probs.For(batch, time), logits, targets);
        var host = _hostLosses.AsSpan(0, batch * time);
        backend.Download(losses, host);
        double sum = 0;
        foreach (float l in host) sum += l;
        return (float)(sum / host.Length);
    }

    /// <summary>The logits [B, T, V] of the last forward pass (until a backward pass, which reuses their memory).</summary>
    public Tensor Logits => _lastIds is null ? throw new InvalidOperationException("no forward pass has run yet")
        : _logitsSpent ? throw new InvalidOperationException("the last backward pass wrote the logits' gradient over them; run a forward pass to read logits")
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
        _logitsSpent = true;
        backend.Fill(dLosses, 1f / (batch * time));
        backend.Fill(dLogits, 0f);
        backend.CrossEntropyBackward(dLogits, dLosses, _probs.For(batch, time), _lastTargets);
        // The head: logits = ln · Wᵀ (W the token embedding's table when tied).
        Tensor ln = _ln.For(batch, time), dLn = _dLn.For(batch, time);
        int rows = batch * time, vocab = Config.Vocabulary, channels = Config.Channels, count = 0;
        if (StoredHead is not null) backend.MatMulQuantized(dLn, dLogits, StoredHead, Transpose.No);
        else _headGradients[count++] = new GemmProblem(dLn, dLogits, HeadWeight.Value, rows, channels, vocab);
        if (_headWeight?.HasGradient == true)
            _headGradients[count++] = new GemmProblem(HeadWeight.Gradient, dLogits, ln, vocab, channels, rows, Transpose.Yes, beta: 1f);
        if (count > 0) backend.GemmGrouped(_headGradients.AsSpan(0, count));
        _headGradients.AsSpan().Clear(); // no tensor kept alive past the call
        Tensor dH = _dH.For(batch, time);
        backend.Fill(dH, 0f);
        FinalNorm.Backward(dH, dLn, _h.For(batch, time));
        // Frozen embeddings (LoRA fine-tuning) need no input gradient: the first block skips computing it, as autograd would.
        if (!TokenEmbedding.HasGradient && PositionEmbedding?.HasGradient != true)
        {
            Stack.Backward(null, dH, _x0.For(batch, time));
            return;
        }
        Tensor dX0 = _dX0.For(batch, time);
        backend.Fill(dX0, 0f);
        Stack.Backward(dX0, dH, _x0.For(batch, time));
        TokenEmbedding.Backward(dX0, _lastIds);
        PositionEmbedding?.Backward(dX0, _positions.For(batch, time));
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
        if (StoredHead is not null) return; // computed against as stored
        if (_head is null) _head = Backend.PackMatrix(HeadWeight.Value, Transpose.Yes);
        else Backend.Repack(_head, HeadWeight.Value, Transpose.Yes);
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
        if (_head is null && StoredHead is null) throw new InvalidOperationException("Infer needs the inference snapshot: call PrepareInference first");
        var backend = Backend;
        int n = step.Tokens, m = step.SequenceCount, c = Config.Channels, v = Config.Vocabulary;
        Tensor x = step.X.Rows(n), positions = step.Embedded.Rows(n);
        TokenEmbedding.Lookup(x, step.Ids.Rows(n));
        if (PositionEmbedding is not null)
        {
            backend.EmbeddingForward(positions, step.Positions.Rows(n), PositionEmbedding.Table.Value);
            backend.Add(x, x, positions);
        }
        var blocks = Stack.Blocks;
        for (int l = 0; l < blocks.Count; l++) blocks[l].Infer(step, step.X); // an indexed loop: no enumerator on the hot path
        foreach (var s in step.Sequences)
            backend.CopyRows(step.Last.Block, (long)s.OutputRow * c, c, step.X.Block, (long)(s.TokenStart + s.Count - 1) * c, c, 1, c);
        FinalNorm.Infer(step, step.LastNormed, step.Last, m);
        if (StoredHead is not null) backend.GemmQuantized(Transpose.Yes, m, 1f, step.LastNormed.Block, 0, c, StoredHead, 0f, step.Logits.Block, 0, v, ActivationPrecisions.ForInference(StoredHead.Format));
        else backend.GemmPacked(m, 1f, step.LastNormed.Block, 0, c, _head!, 0f, step.Logits.Block, 0, v);
        backend.Download(step.Logits.Rows(m), logits[..(m * v)]);
    }

    /// <summary>Returns every reservation to the pool.</summary>
    public void Dispose()
    {
        foreach (var linear in Linears) linear.ReleaseInference();
        _head?.Dispose();
        Parameters.Dispose();
        Activations.Dispose();
        _positions?.Dispose();
        _rotary?.Dispose();
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
}

using LoraRuntime.Layers.Inference;

namespace LoraRuntime.Layers;

/// <summary>
/// Causal self-attention with a fused QKV projection: qkv = x W_qkvᵀ (+ b) with W_qkv [(NH + 2·KVH)·HS, C], rows
/// q | k | v (GPT-2's c_attn when KVH = NH and HS = C / NH; Llama's q_proj, k_proj, v_proj stacked); with rotary
/// positions, q and k are rotated at their positions; att = softmax(q kᵀ / √HS) with a causal mask, query head h
/// reading key/value head h / (NH / KVH); y = att v; output = y W_oᵀ (+ b_o). Training scores and probabilities take
/// B·NH·T² floats: O(T²). The same layer serves a step over a KV cache (<see cref="Infer"/>): its (rotated) keys and
/// values go to the cache's layer <see cref="Layer"/> and every query attends its own sequence's cached positions.
/// </summary>
internal sealed class CausalSelfAttention
{
    private readonly Activations _activations;
    private readonly AttentionHeads _heads;
    private readonly ActivationBuffer _att, _dAtt, _dScores;
    private readonly RotaryTables? _rotary;
    private readonly ActivationBuffer? _qkvRaw, _qRstd, _kRstd, _dQNormDiscarded, _dKNormDiscarded;
    private readonly float _normEpsilon;

    /// <summary>
    /// Declares the projections "<paramref name="name"/>.qkv" and ".o" and the activations; <paramref name="layer"/> is
    /// the block's index; <paramref name="rotary"/> (the model's tables) rotates q and k, whose positions it holds.
    /// </summary>
    public CausalSelfAttention(ParameterSet parameters, Activations activations, string name, int channels, int heads, int layer = 0,
        int? kvHeads = null, int? headSize = null, bool qkvBias = true, bool outputBias = true, RotaryTables? rotary = null, float? qkNormEpsilon = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentOutOfRangeException.ThrowIfNegative(layer);
        _activations = activations;
        Name = name;
        Layer = layer;
        _rotary = rotary;
        _heads = new AttentionHeads(parameters, activations, name, channels, heads, kvHeads, headSize, qkvBias, outputBias);
        _att = activations.Add(name + ".att", (b, t) => new Shape(b, heads, t, t));
        _dAtt = activations.AddSharedGradient("attn.datt", (b, t) => new Shape(b, heads, t, t));
        _dScores = activations.AddSharedGradient("attn.dscores", (b, t) => new Shape(b, heads, t, t));
        if (qkNormEpsilon is { } epsilon)
        {
            int hs = _heads.HeadSize, kvh = _heads.KvHeadCount, width = _heads.QkvWidth;
            _normEpsilon = epsilon;
            QNorm = parameters.Add(name + ".q_norm.weight", hs);
            KNorm = parameters.Add(name + ".k_norm.weight", hs);
            _qkvRaw = activations.Add(name + ".qkv.raw", (b, t) => new Shape(b, t, width));
            _qRstd = activations.Add(name + ".q_norm.rstd", (b, t) => new Shape(b, t, heads));
            _kRstd = activations.Add(name + ".k_norm.rstd", (b, t) => new Shape(b, t, kvh));
            // Frozen norms still back-propagate to their input; the primitive's dw then lands here.
            _dQNormDiscarded = activations.AddGradient(name + ".q_norm.dweight.discarded", (_, _) => new Shape(hs));
            _dKNormDiscarded = activations.AddGradient(name + ".k_norm.dweight.discarded", (_, _) => new Shape(hs));
        }
    }

    /// <summary>The weight [HS] of the RMS norm of every q head before the rotation (Qwen3), or null.</summary>
    public Parameter? QNorm { get; }

    /// <summary>The weight [HS] of the RMS norm of every k head (Qwen3), or null.</summary>
    public Parameter? KNorm { get; }

    /// <summary>The module path.</summary>
    public string Name { get; }

    /// <summary>The block's index: the layer of the KV cache this attention reads and writes.</summary>
    public int Layer { get; }

    /// <summary>C.</summary>
    public int Channels => _heads.Channels;

    /// <summary>NH.</summary>
    public int HeadCount => _heads.HeadCount;

    /// <summary>KVH.</summary>
    public int KvHeadCount => _heads.KvHeadCount;

    /// <summary>HS.</summary>
    public int HeadSize => _heads.HeadSize;

    /// <summary>NH·HS, q's width; KVH·HS, k's and v's.</summary>
    public int QueryWidth => _heads.QueryWidth;

    /// <inheritdoc cref="QueryWidth"/>
    public int KeyValueWidth => _heads.KeyValueWidth;

    /// <summary>The fused projection [(NH + 2·KVH)·HS, C]: rows [0, NH·HS) make q, then KVH·HS each k and v.</summary>
    public Linear Qkv => _heads.Qkv;

    /// <summary>The output projection [C, NH·HS].</summary>
    public Linear Out => _heads.Out;

    private Backend Backend => _heads.Backend;

    /// <summary>output [B, T, C] = attention(input [B, T, C]).</summary>
    public void Forward(Tensor output, Tensor input)
    {
        var (batch, time) = Guard.Input(_activations, input, nameof(input), Channels);
        Tensor qkv = _heads.ProjectQkv(input, batch, time);
        if (QNorm is not null)
        {
            // Qwen3: each q and k head RMS-normed in place; the raw projection is kept for the backward pass.
            Backend.Copy(_qkvRaw!.For(batch, time), qkv);
            Backend.HeadRmsNormForward(qkv, _qRstd!.For(batch, time), 0, HeadCount, HeadSize, QNorm.Value, _normEpsilon);
            Backend.HeadRmsNormForward(qkv, _kRstd!.For(batch, time), HeadCount, KvHeadCount, HeadSize, KNorm!.Value, _normEpsilon);
        }
        // q and k rotated at their positions (the first NH + KVH heads of each row), in place.
        _rotary?.Apply(qkv, _rotary.Positions(batch, time), HeadCount + KvHeadCount, HeadSize);
        // att [T, T] = causal softmax(q kᵀ / √HS), y = att v, the heads merged into y's rows.
        Backend.CausalSelfAttentionForward(_heads.OutputRows(batch, time), _att.For(batch, time), qkv, HeadCount, KvHeadCount, _heads.ScoreScale,
            _heads.Scratch(batch, time));
        _heads.ForwardOut(output, batch, time, merged: true);
    }

    /// <summary>The accumulating pass: see the overload.</summary>
    public void Backward(Tensor? dInput, Tensor dOutput, Tensor input) => Backward(dInput, dOutput, input, accumulate: true);

    /// <summary>
    /// dInput += ∂L/∂input (stored instead without <paramref name="accumulate"/>) and the projections' gradients; needs
    /// the forward pass of this input just before.
    /// </summary>
    public void Backward(Tensor? dInput, Tensor dOutput, Tensor input, bool accumulate)
    {
        var (batch, time) = Guard.Input(_activations, input, nameof(input), Channels);
        Guard.Sequence(dOutput, nameof(dOutput), batch, time, Channels);
        Tensor dy = _heads.BackwardOut(dOutput, batch, time, split: false);
        Tensor dQkv = _heads.QkvGradient(batch, time);
        Backend.CausalSelfAttentionBackward(dQkv, _dScores.For(batch, time), dy, _heads.QkvRows(batch, time),
            _att.For(batch, time), HeadCount, KvHeadCount, _heads.ScoreScale, _heads.Scratch(batch, time),
            _heads.GradientScratch(batch, time, _dAtt.For(batch, time)));
        // The rotation is orthogonal: its backward pass rotates dq and dk back.
        _rotary?.Apply(dQkv, _rotary.Positions(batch, time), HeadCount + KvHeadCount, HeadSize, inverse: true);
        if (QNorm is not null)
        {
            Tensor raw = _qkvRaw!.For(batch, time);
            Backend.HeadRmsNormBackward(dQkv, QNorm.HasGradient ? QNorm.Gradient : _dQNormDiscarded!.For(1, 1), raw, QNorm.Value, _qRstd!.For(batch, time), 0,
                HeadCount, HeadSize);
            Backend.HeadRmsNormBackward(dQkv, KNorm!.HasGradient ? KNorm.Gradient : _dKNormDiscarded!.For(1, 1), raw, KNorm.Value, _kRstd!.For(batch, time),
                HeadCount, KvHeadCount, HeadSize);
        }
        _heads.BackwardQkv(dInput, input, batch, time, merged: true, accumulate: accumulate);
    }

    /// <summary>
    /// The inference pass of a serving step: qkv = Qkv(input [N, C]); each sequence's keys and values go to its cache slot
    /// at its positions; every token attends its sequence's cached positions up to its own (the causal mask, whether
    /// the step prefills many of a sequence's tokens or decodes one); output [N, C] = Out(y).
    /// </summary>
    public void Infer(InferenceStep step, RowBuffer output, RowBuffer input)
    {
        var cache = step.Cache;
        int q = QueryWidth, kv = KeyValueWidth, width = _heads.QkvWidth, n = 0;
        Qkv.Infer(step, step.Qkv, input);
        if (QNorm is not null)
        {
            Backend.HeadRmsNormForward(step.Qkv.Rows(step.Tokens), step.QueryNormRstd.Rows(step.Tokens), 0, HeadCount, HeadSize, QNorm.Value, _normEpsilon);
            Backend.HeadRmsNormForward(step.Qkv.Rows(step.Tokens), step.KeyNormRstd.Rows(step.Tokens), HeadCount, KvHeadCount, HeadSize, KNorm!.Value,
                _normEpsilon);
        }
        _rotary?.Apply(step.Qkv.Rows(step.Tokens), step.Positions.Rows(step.Tokens), HeadCount + KvHeadCount, HeadSize);
        Tensor qkv = step.Qkv.Block;
        var rows = step.AttentionRows;
        foreach (var s in step.Sequences)
        {
            long keys = cache.Offset(Layer, 0, s.Slot), values = cache.Offset(Layer, 1, s.Slot);
            long qkvRow = (long)s.TokenStart * width;
            Backend.CopyRows(cache.Values, keys + (long)s.Start * kv, kv, qkv, qkvRow + q, width, s.Count, kv);
            Backend.CopyRows(cache.Values, values + (long)s.Start * kv, kv, qkv, qkvRow + q + kv, width, s.Count, kv);
            for (int t = 0; t < s.Count; t++)
            {
                long token = s.TokenStart + t;
                rows[n++] = new DecodeAttentionRow(token * width, token * q, keys, values, s.Start + t + 1);
            }
        }
        Backend.CachedAttention(step.Y.Block, qkv, cache.Values, kv, rows.AsSpan(0, n), HeadCount, KvHeadCount, HeadSize, _heads.ScoreScale, step.Scores);
        Out.Infer(step, output, step.Y);
    }
}

namespace LoraRuntime.Layers;

/// <summary>
/// What full and low-rank attention share: the fused QKV projection and its split into heads, and the merge of
/// the heads' outputs into the output projection, with their activations and gradients. q has NH heads, k and v KVH
/// each (grouped-query attention when KVH &lt; NH), every head HS wide (C / NH unless given).
/// Shapes: qkv [B, T, (NH + 2·KVH)·HS]; q, y heads [B, NH, T, HS]; k, v heads [B, KVH, T, HS]; y [B, T, NH·HS].
/// </summary>
internal sealed class AttentionHeads
{
    private readonly ActivationBuffer _qkv, _q, _k, _v, _yHeads, _y;
    private readonly ActivationBuffer _dQkv, _dq, _dk, _dv, _dyHeads, _dy;

    public AttentionHeads(ParameterSet parameters, Activations activations, string name, int channels, int heads, int? kvHeads = null,
        int? headSize = null, bool qkvBias = true, bool outputBias = true)
    {
        ArgumentNullException.ThrowIfNull(activations);
        Guard.Positive(channels, nameof(channels));
        Guard.Positive(heads, nameof(heads));
        if (headSize is null && channels % heads != 0)
            throw new ArgumentException($"heads: C = {channels} must be a multiple of the number of heads NH; got NH = {heads}", nameof(heads));
        int kvh = kvHeads ?? heads, hs = headSize ?? channels / heads;
        Guard.Positive(hs, nameof(headSize));
        if (kvh < 1 || heads % kvh != 0)
            throw new ArgumentException($"kvHeads: expected KVH ≥ 1 dividing NH = {heads}; got {kvh}", nameof(kvHeads));
        Channels = channels;
        HeadCount = heads;
        KvHeadCount = kvh;
        HeadSize = hs;
        ScoreScale = 1 / MathF.Sqrt(HeadSize);
        int qWidth = QueryWidth, width = QkvWidth;
        Qkv = new Linear(parameters, name + ".qkv", channels, width, qkvBias, activations);
        Out = new Linear(parameters, name + ".o", qWidth, channels, outputBias, activations);
        Func<int, int, Shape> rows = (b, t) => new Shape(b, t, qWidth), fused = (b, t) => new Shape(b, t, width);
        Func<int, int, Shape> split = (b, t) => new Shape(b, heads, t, hs), kvSplit = (b, t) => new Shape(b, kvh, t, hs);
        _qkv = activations.Add(name + ".qkv.out", fused);
        _q = activations.Add(name + ".q", split);
        _k = activations.Add(name + ".k", kvSplit);
        _v = activations.Add(name + ".v", kvSplit);
        // The heads' outputs are merged into y within the forward pass; no backward pass reads them.
        _yHeads = activations.AddSharedScratch("attn.y.heads", split);
        _y = activations.Add(name + ".y", rows);
        _dQkv = activations.AddSharedGradient("attn.qkv.dout", fused);
        _dq = activations.AddSharedGradient("attn.dq", split);
        _dk = activations.AddSharedGradient("attn.dk", kvSplit);
        _dv = activations.AddSharedGradient("attn.dv", kvSplit);
        _dyHeads = activations.AddSharedGradient("attn.dy.heads", split);
        _dy = activations.AddSharedGradient("attn.dy", rows);
    }

    /// <summary>C, the model's width (the projections' input and the output's).</summary>
    public int Channels { get; }

    /// <summary>NH.</summary>
    public int HeadCount { get; }

    /// <summary>KVH.</summary>
    public int KvHeadCount { get; }

    /// <summary>HS.</summary>
    public int HeadSize { get; }

    /// <summary>NH·HS: q's width, and y's.</summary>
    public int QueryWidth => HeadCount * HeadSize;

    /// <summary>KVH·HS: k's width, and v's.</summary>
    public int KeyValueWidth => KvHeadCount * HeadSize;

    /// <summary>(NH + 2·KVH)·HS: a packed qkv row.</summary>
    public int QkvWidth => QueryWidth + 2 * KeyValueWidth;

    /// <summary>1/√HS, the scale of the attention scores.</summary>
    public float ScoreScale { get; }

    public Linear Qkv { get; }
    public Linear Out { get; }
    public Backend Backend => Qkv.Owner.Backend;

    /// <summary>qkv = Qkv(input), split into q, k, v heads.</summary>
    public (Tensor Q, Tensor K, Tensor V) ForwardQkv(Tensor input, int batch, int time)
    {
        ProjectQkv(input, batch, time);
        return SplitQkv(batch, time);
    }

    /// <summary>qkv [B, T, 3C] = Qkv(input), not split.</summary>
    public Tensor ProjectQkv(Tensor input, int batch, int time)
    {
        Tensor qkv = _qkv.For(batch, time);
        Qkv.Forward(qkv, input);
        return qkv;
    }

    /// <summary>Splits the projected qkv into q, k, v heads [B, NH, T, HS].</summary>
    public (Tensor Q, Tensor K, Tensor V) SplitQkv(int batch, int time)
    {
        Tensor qkv = _qkv.For(batch, time);
        var (q, k, v) = Split(batch, time);
        Backend.SplitHeads(q, qkv, 0);
        Backend.SplitHeads(k, qkv, QueryWidth);
        Backend.SplitHeads(v, qkv, QueryWidth + KeyValueWidth);
        return (q, k, v);
    }

    /// <summary>The projected qkv [B, T, 3C] of the last forward pass.</summary>
    public Tensor QkvRows(int batch, int time) => _qkv.For(batch, time);

    /// <summary>Its gradient dqkv [B, T, 3C].</summary>
    public Tensor QkvGradient(int batch, int time) => _dQkv.For(batch, time);

    /// <summary>The heads' outputs merged into rows, y [B, T, C], which the output projection reads.</summary>
    public Tensor OutputRows(int batch, int time) => _y.For(batch, time);

    /// <summary>What the composed attention keeps per pass (<see cref="Backend.CausalSelfAttentionForward"/>).</summary>
    public AttentionScratch Scratch(int batch, int time) => new(_q.For(batch, time), _k.For(batch, time), _v.For(batch, time), _yHeads.For(batch, time));

    /// <summary>The composed attention's gradients, with <paramref name="dAtt"/> [B, NH, T, T].</summary>
    public AttentionGradientScratch GradientScratch(int batch, int time, Tensor dAtt) =>
        new(_dq.For(batch, time), _dk.For(batch, time), _dv.For(batch, time), _dyHeads.For(batch, time), dAtt);

    public (Tensor Q, Tensor K, Tensor V) Split(int batch, int time) => (_q.For(batch, time), _k.For(batch, time), _v.For(batch, time));

    public (Tensor DQ, Tensor DK, Tensor DV) SplitGradients(int batch, int time) =>
        (_dq.For(batch, time), _dk.For(batch, time), _dv.For(batch, time));

    /// <summary>Where the attention core writes its per-head outputs [B, NH, T, HS].</summary>
    public Tensor HeadOutputs(int batch, int time) => _yHeads.For(batch, time);

    /// <summary>
    /// The attention core per (b, h): att [T, L] = softmax(q [T, HS] · keysᵀ [HS, L] / √HS), causal or not, and
    /// y heads [T, HS] = att · values [L, HS]. Full attention passes k and v (L = T); low-rank attention passes their
    /// projections (L = K).
    /// </summary>
    public void Attend(Tensor att, Tensor q, Tensor keys, Tensor values, int batch, int time, int length, bool causal)
    {
        var (headStride, keyStride, attStride) = Strides(time, length);
        int bh = batch * HeadCount, hs = HeadSize;
        Backend.GemmStridedBatched(new GemmProblem(att, q, keys, time, length, hs, Transpose.No, Transpose.Yes, ScoreScale),
            headStride, keyStride, attStride, bh);
        Backend.SoftmaxForward(att, att, causal);
        Backend.GemmStridedBatched(new GemmProblem(HeadOutputs(batch, time), att, values, time, hs, length), attStride, keyStride, headStride, bh);
    }

    /// <summary>
    /// The backward pass of <see cref="Attend"/> from dy heads: writes dq, dKeys and dValues, using dAtt and dScores
    /// [B, NH, T, L] as scratch.
    /// </summary>
    public void AttendBackward(Tensor dq, Tensor dKeys, Tensor dValues, Tensor dAtt, Tensor dScores, Tensor dy, Tensor q, Tensor keys, Tensor values,
        Tensor att, int batch, int time, int length, bool causal)
    {
        var (headStride, keyStride, attStride) = Strides(time, length);
        int bh = batch * HeadCount, hs = HeadSize;
        // datt = dy · valuesᵀ and dvalues = attᵀ · dy.
        Backend.GemmStridedBatched(new GemmProblem(dAtt, dy, values, time, length, hs, Transpose.No, Transpose.Yes), headStride, keyStride, attStride, bh);
        Backend.GemmStridedBatched(new GemmProblem(dValues, att, dy, length, hs, time, Transpose.Yes), attStride, headStride, keyStride, bh);
        Backend.Fill(dScores, 0f);
        Backend.SoftmaxBackward(dScores, att, dAtt, causal);
        // scores = s·q keysᵀ: dq = s·dscores · keys and dkeys = s·dscoresᵀ · q.
        Backend.GemmStridedBatched(new GemmProblem(dq, dScores, keys, time, hs, length, alpha: ScoreScale), attStride, keyStride, headStride, bh);
        Backend.GemmStridedBatched(new GemmProblem(dKeys, dScores, q, length, hs, time, Transpose.Yes, alpha: ScoreScale), attStride, headStride, keyStride, bh);
    }

    private (long Head, long Key, long Att) Strides(int time, int length) => ((long)time * HeadSize, (long)length * HeadSize, (long)time * length);

    /// <summary>output = Out(merge(y heads)), or Out(y) when a fused pass wrote y merged already.</summary>
    public void ForwardOut(Tensor output, int batch, int time, bool merged = false)
    {
        Tensor y = _y.For(batch, time);
        Guard.Sequence(output, nameof(output), batch, time, Channels);
        if (!merged) Backend.MergeHeads(y, _yHeads.For(batch, time), 0);
        Out.Forward(output, y);
    }

    /// <summary>Back through the output projection; returns dy split into heads [B, NH, T, HS], or as rows [B, T, C] for a fused pass.</summary>
    public Tensor BackwardOut(Tensor dOutput, int batch, int time, bool split = true)
    {
        Tensor dy = _dy.For(batch, time);
        Out.Backward(dy, dOutput, _y.For(batch, time), accumulate: false);
        if (!split) return dy;
        Tensor dyHeads = _dyHeads.For(batch, time);
        Backend.SplitHeads(dyHeads, dy, 0);
        return dyHeads;
    }

    /// <summary>
    /// Merges dq, dk, dv into dqkv (unless a fused pass wrote it) and goes back through the QKV projection into dInput
    /// (added to it, or stored without <paramref name="accumulate"/>).
    /// </summary>
    public void BackwardQkv(Tensor? dInput, Tensor input, int batch, int time, bool merged = false, bool accumulate = true)
    {
        Tensor dQkv = _dQkv.For(batch, time);
        if (!merged)
        {
            var (dq, dk, dv) = SplitGradients(batch, time);
            Backend.MergeHeads(dQkv, dq, 0);
            Backend.MergeHeads(dQkv, dk, QueryWidth);
            Backend.MergeHeads(dQkv, dv, QueryWidth + KeyValueWidth);
        }
        Qkv.Backward(dInput, dQkv, input, accumulate);
    }
}

namespace LoraRuntime.Layers;

/// <summary>
/// Multi-head causal self-attention with a fused QKV projection, as GPT-2 has it:
/// qkv = x W_qkvᵀ + b (W_qkv [3C, C], rows q | k | v), heads of size HS = C / NH, att = softmax(q kᵀ / √HS) with
/// a causal mask, y = att v, output = y W_oᵀ + b_o. Scores and probabilities take B·NH·T² floats: O(T²).
/// </summary>
internal sealed class CausalSelfAttention
{
    private readonly Activations _activations;
    private readonly AttentionHeads _heads;
    private readonly ActivationBuffer _att, _dAtt, _dScores;
    private bool _fused; // the last forward pass ran the fused kernel (its backward must too)

    /// <summary>Declares the projections "<paramref name="name"/>.qkv" and ".o" and the activations.</summary>
    public CausalSelfAttention(ParameterSet parameters, Activations activations, string name, int channels, int heads)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        _activations = activations;
        Name = name;
        _heads = new AttentionHeads(parameters, activations, name, channels, heads);
        _att = activations.Add(name + ".att", (b, t) => new Shape(b, heads, t, t));
        _dAtt = activations.AddGradient(name + ".datt", (b, t) => new Shape(b, heads, t, t));
        _dScores = activations.AddGradient(name + ".dscores", (b, t) => new Shape(b, heads, t, t));
    }

    /// <summary>The module path.</summary>
    public string Name { get; }

    /// <summary>C.</summary>
    public int Channels => _heads.Channels;

    /// <summary>NH.</summary>
    public int HeadCount => _heads.HeadCount;

    /// <summary>HS = C / NH.</summary>
    public int HeadSize => _heads.HeadSize;

    /// <summary>The fused projection [3C, C]: rows [0, C) make q, [C, 2C) k, [2C, 3C) v.</summary>
    public Linear Qkv => _heads.Qkv;

    /// <summary>The output projection [C, C].</summary>
    public Linear Out => _heads.Out;

    /// <summary>output [B, T, C] = attention(input [B, T, C]).</summary>
    public void Forward(Tensor output, Tensor input)
    {
        var (batch, time) = Guard.Input(_activations, input, nameof(input), Channels);
        _heads.ProjectQkv(input, batch, time);
        // att [T, T] = causal softmax(q kᵀ / √HS), y = att v: fused from qkv where the backend has the kernel, else per head.
        _fused = _heads.TryAttendFused(_att.For(batch, time), batch, time);
        if (!_fused)
        {
            var (q, k, v) = _heads.SplitQkv(batch, time);
            _heads.Attend(_att.For(batch, time), q, k, v, batch, time, time, causal: true);
        }
        _heads.ForwardOut(output, batch, time, merged: _fused);
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
        if (_fused)
        {
            Tensor dyRows = _heads.BackwardOut(dOutput, batch, time, split: false);
            if (!_heads.TryAttendBackwardFused(_dScores.For(batch, time), dyRows, _att.For(batch, time), batch, time))
                throw new InvalidOperationException($"{_heads.Backend.Name}: the fused attention ran forward but has no backward kernel for this shape");
            _heads.BackwardQkv(dInput, input, batch, time, merged: true, accumulate: accumulate);
            return;
        }
        Tensor dy = _heads.BackwardOut(dOutput, batch, time);
        var (q, k, v) = _heads.Split(batch, time);
        var (dq, dk, dv) = _heads.SplitGradients(batch, time);
        _heads.AttendBackward(dq, dk, dv, _dAtt.For(batch, time), _dScores.For(batch, time), dy, q, k, v, _att.For(batch, time), batch, time, time,
            causal: true);
        _heads.BackwardQkv(dInput, input, batch, time, accumulate: accumulate);
    }
}

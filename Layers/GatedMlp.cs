using LoraRuntime.Layers.Inference;

namespace LoraRuntime.Layers;

/// <summary>
/// Llama's feed-forward block: y = down(silu(gate x) ⊙ up x), with gate and up [I, C] stacked as one projection
/// gate_up [2I, C] (one GEMM; LoRA targets "gate" and "up" are its row slices) and down [C, I].
/// </summary>
internal sealed class GatedMlp : IFeedForward
{
    private readonly Activations _activations;
    private readonly ActivationBuffer _hidden, _activated, _dHidden, _dActivated;

    /// <summary>Declares "<paramref name="name"/>.gate_up" and ".down", and the [B, T, 2I] and [B, T, I] activations.</summary>
    public GatedMlp(ParameterSet parameters, Activations activations, string name, int channels, int hiddenWidth, bool bias = false)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(activations);
        Guard.Positive(channels, nameof(channels));
        Guard.Positive(hiddenWidth, nameof(hiddenWidth));
        _activations = activations;
        Name = name;
        Channels = channels;
        HiddenWidth = hiddenWidth;
        GateUp = new Linear(parameters, name + ".gate_up", channels, 2 * hiddenWidth, bias, activations);
        Down = new Linear(parameters, name + ".down", hiddenWidth, channels, bias, activations);
        Linears = [GateUp, Down];
        _hidden = activations.Add(name + ".gate_up.out", (b, t) => new Shape(b, t, 2 * hiddenWidth));
        _activated = activations.Add(name + ".act.out", (b, t) => new Shape(b, t, hiddenWidth));
        _dHidden = activations.AddSharedGradient("mlp.gate_up.dout", (b, t) => new Shape(b, t, 2 * hiddenWidth));
        _dActivated = activations.AddSharedGradient("mlp.act.dout", (b, t) => new Shape(b, t, hiddenWidth));
    }

    /// <inheritdoc/>
    public string Name { get; }

    /// <summary>C.</summary>
    public int Channels { get; }

    /// <summary>I.</summary>
    public int HiddenWidth { get; }

    /// <summary>gate [I, C] over up [I, C]: [2I, C].</summary>
    public Linear GateUp { get; }

    /// <summary>The projection back [C, I].</summary>
    public Linear Down { get; }

    /// <inheritdoc/>
    public IReadOnlyList<Linear> Linears { get; }

    /// <inheritdoc/>
    public IEnumerable<LinearTarget> LinearTargets =>
    [
        new(GateUp.Name, GateUp, 0, 2 * HiddenWidth, false), new(Name + ".gate", GateUp, 0, HiddenWidth, true),
        new(Name + ".up", GateUp, HiddenWidth, HiddenWidth, true), new(Down.Name, Down),
    ];

    private Backend Backend => GateUp.Owner.Backend;

    /// <inheritdoc/>
    public void Forward(Tensor output, Tensor input)
    {
        var (batch, time) = Guard.Input(_activations, input, nameof(input), Channels);
        Tensor hidden = _hidden.For(batch, time), activated = _activated.For(batch, time);
        GateUp.Forward(hidden, input);
        Backend.GatedSiluForward(activated, hidden);
        Down.Forward(output, activated);
    }

    /// <inheritdoc/>
    public void Backward(Tensor? dInput, Tensor dOutput, Tensor input, bool accumulate)
    {
        var (batch, time) = Guard.Input(_activations, input, nameof(input), Channels);
        Tensor dHidden = _dHidden.For(batch, time), dActivated = _dActivated.For(batch, time);
        Down.Backward(dActivated, dOutput, _activated.For(batch, time), accumulate: false);
        Backend.GatedSiluBackward(dHidden, _hidden.For(batch, time), dActivated);
        GateUp.Backward(dInput, dHidden, input, accumulate);
    }

    /// <inheritdoc/>
    public void Infer(InferenceStep step, RowBuffer output, RowBuffer input)
    {
        int n = step.Tokens;
        GateUp.Infer(step, step.Hidden, input);
        Backend.GatedSiluForward(step.Activated.Rows(n), step.Hidden.Rows(n));
        Down.Infer(step, output, step.Activated);
    }
}

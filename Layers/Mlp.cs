using LoraRuntime.Layers.Inference;

namespace LoraRuntime.Layers;

/// <summary>The transformer's feed-forward block: y = proj(GELU(fc(x))) with fc [4C, C] and proj [C, 4C].</summary>
internal sealed class Mlp
{
    private readonly Activations _activations;
    private readonly ActivationBuffer _hidden, _activated, _dHidden, _dActivated;

    /// <summary>Declares fc and proj under "<paramref name="name"/>.fc" and ".proj", and the [B, T, 4C] activations.</summary>
    public Mlp(ParameterSet parameters, Activations activations, string name, int channels)
    {
        ArgumentNullException.ThrowIfNull(activations);
        _activations = activations;
        Name = name;
        Channels = channels;
        int hidden = 4 * channels;
        Fc = new Linear(parameters, name + ".fc", channels, hidden, activations: activations);
        Gelu = new Gelu(parameters.Backend, hidden);
        Proj = new Linear(parameters, name + ".proj", hidden, channels, activations: activations);
        _hidden = activations.Add(name + ".fc.out", (b, t) => new Shape(b, t, hidden));
        _activated = activations.Add(name + ".gelu.out", (b, t) => new Shape(b, t, hidden));
        _dHidden = activations.AddGradient(name + ".fc.dout", (b, t) => new Shape(b, t, hidden));
        _dActivated = activations.AddGradient(name + ".gelu.dout", (b, t) => new Shape(b, t, hidden));
    }

    /// <summary>The module path.</summary>
    public string Name { get; }

    /// <summary>C.</summary>
    public int Channels { get; }

    /// <summary>The expansion [4C, C].</summary>
    public Linear Fc { get; }

    /// <summary>The activation.</summary>
    public Gelu Gelu { get; }

    /// <summary>The projection back [C, 4C].</summary>
    public Linear Proj { get; }

    /// <summary>output [B, T, C] = proj(GELU(fc(input))).</summary>
    public void Forward(Tensor output, Tensor input)
    {
        var (batch, time) = Guard.Input(_activations, input, nameof(input), Channels);
        Tensor hidden = _hidden.For(batch, time), activated = _activated.For(batch, time);
        Fc.Forward(hidden, input);
        Gelu.Forward(activated, hidden);
        Proj.Forward(output, activated);
    }

    /// <summary>The inference pass of a serving step: output [N, C] = proj(GELU(fc(input [N, C]))).</summary>
    public void Infer(InferenceStep step, RowBuffer output, RowBuffer input)
    {
        Fc.Infer(step, step.Hidden, input);
        Gelu.Backend.GeluForward(step.Activated.Rows(step.Tokens), step.Hidden.Rows(step.Tokens));
        Proj.Infer(step, output, step.Activated);
    }

    /// <summary>The accumulating pass: see the overload.</summary>
    public void Backward(Tensor? dInput, Tensor dOutput, Tensor input) => Backward(dInput, dOutput, input, accumulate: true);

    /// <summary>
    /// dInput += ∂L/∂input (stored instead without <paramref name="accumulate"/>) and the parameter gradients; needs
    /// the forward pass of this input just before. The hidden gradients are stored, never zeroed and added to.
    /// </summary>
    public void Backward(Tensor? dInput, Tensor dOutput, Tensor input, bool accumulate)
    {
        var (batch, time) = Guard.Input(_activations, input, nameof(input), Channels);
        Tensor dHidden = _dHidden.For(batch, time), dActivated = _dActivated.For(batch, time);
        Proj.Backward(dActivated, dOutput, _activated.For(batch, time), accumulate: false);
        Gelu.Backward(dHidden, dActivated, _hidden.For(batch, time), accumulate: false);
        Fc.Backward(dInput, dHidden, input, accumulate);
    }
}

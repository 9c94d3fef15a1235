using LoraRuntime.Layers.Inference;

namespace LoraRuntime.Layers;

/// <summary>What a block's feed-forward part offers, whichever kind it is (<see cref="MlpKind"/>).</summary>
internal interface IFeedForward
{
    /// <summary>The module path.</summary>
    string Name { get; }

    /// <summary>Its projections in forward order; the last one writes back into the residual stream.</summary>
    IReadOnlyList<Linear> Linears { get; }

    /// <summary>The projections LoRA can target, by module path (whole layers and named slices).</summary>
    IEnumerable<LinearTarget> LinearTargets { get; }

    /// <summary>output [B, T, C] = the block applied to input [B, T, C].</summary>
    void Forward(Tensor output, Tensor input);

    /// <summary>
    /// dInput += ∂L/∂input (stored instead without <paramref name="accumulate"/>) and the parameter gradients; needs
    /// the forward pass of this input just before.
    /// </summary>
    void Backward(Tensor? dInput, Tensor dOutput, Tensor input, bool accumulate);

    /// <summary>The inference pass of a serving step: output [N, C] from input [N, C].</summary>
    void Infer(InferenceStep step, RowBuffer output, RowBuffer input);

    /// <summary>The feed-forward block of <paramref name="config"/>, declared under <paramref name="name"/>.</summary>
    static IFeedForward Create(GptConfig config, ParameterSet parameters, Activations activations, string name) => config.Mlp switch
    {
        MlpKind.Gelu => new Mlp(parameters, activations, name, config.Channels, config.Hidden, config.MlpBias),
        MlpKind.GatedSilu => new GatedMlp(parameters, activations, name, config.Channels, config.Hidden, config.MlpBias),
        _ => throw new ArgumentOutOfRangeException(nameof(config), config.Mlp, "expected Gelu or GatedSilu"),
    };
}

/// <summary>GPT-2's feed-forward block: y = proj(GELU(fc(x))) with fc [I, C] and proj [C, I], I = 4C by default.</summary>
internal sealed class Mlp : IFeedForward
{
    private readonly Activations _activations;
    private readonly ActivationBuffer _hidden, _activated, _dHidden, _dActivated;

    /// <summary>Declares fc and proj under "<paramref name="name"/>.fc" and ".proj", and the [B, T, I] activations (I = 4C unless given).</summary>
    public Mlp(ParameterSet parameters, Activations activations, string name, int channels, int? hiddenWidth = null, bool bias = true)
    {
        ArgumentNullException.ThrowIfNull(activations);
        _activations = activations;
        Name = name;
        Channels = channels;
        int hidden = hiddenWidth ?? 4 * channels;
        Guard.Positive(hidden, nameof(hiddenWidth));
        Fc = new Linear(parameters, name + ".fc", channels, hidden, bias, activations);
        Gelu = new Gelu(parameters.Backend, hidden);
        Proj = new Linear(parameters, name + ".proj", hidden, channels, bias, activations);
        Linears = [Fc, Proj];
        _hidden = activations.Add(name + ".fc.out", (b, t) => new Shape(b, t, hidden));
        _activated = activations.Add(name + ".gelu.out", (b, t) => new Shape(b, t, hidden));
        _dHidden = activations.AddSharedGradient("mlp.fc.dout", (b, t) => new Shape(b, t, hidden));
        _dActivated = activations.AddSharedGradient("mlp.gelu.dout", (b, t) => new Shape(b, t, hidden));
    }

    /// <summary>The module path.</summary>
    public string Name { get; }

    /// <summary>C.</summary>
    public int Channels { get; }

    /// <inheritdoc/>
    public IReadOnlyList<Linear> Linears { get; }

    /// <inheritdoc/>
    public IEnumerable<LinearTarget> LinearTargets => [new(Fc.Name, Fc), new(Proj.Name, Proj)];

    /// <summary>The expansion [I, C].</summary>
    public Linear Fc { get; }

    /// <summary>The activation.</summary>
    public Gelu Gelu { get; }

    /// <summary>The projection back [C, I].</summary>
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

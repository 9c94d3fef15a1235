using LoraRuntime.Layers.Inference;

namespace LoraRuntime.Layers;

/// <summary>
/// Layer normalisation over C: y = (x − mean)·rstd·w + b, rstd = 1/√(var + ε). Keeps mean and rstd [B, T] for
/// the backward pass.
/// </summary>
internal sealed class LayerNorm : INorm
{
    private readonly Activations _activations;
    private readonly ActivationBuffer _mean, _rstd, _discardedWeight, _discardedBias;

    /// <summary>Declares w, b [<paramref name="channels"/>] (w initialised to 1 by <see cref="InitializeDefaults"/>) and mean, rstd.</summary>
    public LayerNorm(ParameterSet parameters, Activations activations, string name, int channels, float epsilon = 1e-5f)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(activations);
        Guard.Positive(channels, nameof(channels));
        _activations = activations;
        Name = name;
        Channels = channels;
        Epsilon = epsilon;
        Weight = parameters.Add(name + ".weight", channels);
        Bias = parameters.Add(name + ".bias", channels);
        _mean = activations.Add(name + ".mean", (b, t) => new Shape(b, t));
        _rstd = activations.Add(name + ".rstd", (b, t) => new Shape(b, t));
        // A frozen LayerNorm still back-propagates to its input; the primitive's dw and db then land here.
        _discardedWeight = activations.AddGradient(name + ".dweight.discarded", (_, _) => new Shape(channels));
        _discardedBias = activations.AddGradient(name + ".dbias.discarded", (_, _) => new Shape(channels));
    }

    /// <summary>The module path.</summary>
    public string Name { get; }

    /// <summary>C.</summary>
    public int Channels { get; }

    /// <summary>ε added to the variance.</summary>
    public float Epsilon { get; }

    /// <summary>w [C].</summary>
    public Parameter Weight { get; }

    /// <summary>b [C].</summary>
    public Parameter Bias { get; }

    private Backend Backend => Weight.Owner.Backend;

    /// <summary>w = 1, b = 0 (PyTorch's initialisation).</summary>
    public void InitializeDefaults()
    {
        Backend.Fill(Weight.Value, 1f);
        Backend.Fill(Bias.Value, 0f);
    }

    /// <summary>output [B, T, C] = LayerNorm(input [B, T, C]); output shares no memory with input.</summary>
    public void Forward(Tensor output, Tensor input)
    {
        var (batch, time) = Guard.Input(_activations, input, nameof(input), Channels);
        Guard.Sequence(output, nameof(output), batch, time, Channels);
        Backend.LayerNormForward(output, _mean.For(batch, time), _rstd.For(batch, time), input, Weight.Value, Bias.Value, Epsilon);
    }

    /// <summary>The inference pass over the first <paramref name="rows"/> rows: output [rows, C] = LayerNorm(input [rows, C]).</summary>
    public void Infer(InferenceStep step, RowBuffer output, RowBuffer input, int rows) =>
        Backend.LayerNormForward(output.Rows(rows), step.Mean.Rows(rows), step.Rstd.Rows(rows), input.Rows(rows), Weight.Value, Bias.Value, Epsilon);

    /// <summary>dInput += ∂L/∂input; dw, db += their gradients unless frozen. Needs the forward pass of this input just before.</summary>
    public void Backward(Tensor dInput, Tensor dOutput, Tensor input)
    {
        var (batch, time) = Guard.Input(_activations, input, nameof(input), Channels);
        Guard.Sequence(dOutput, nameof(dOutput), batch, time, Channels);
        Guard.Sequence(dInput, nameof(dInput), batch, time, Channels);
        bool trained = Weight.HasGradient;
        Tensor dWeight = trained ? Weight.Gradient : _discardedWeight.For(1, 1);
        Tensor dBias = trained ? Bias.Gradient : _discardedBias.For(1, 1);
        Backend.LayerNormBackward(dInput, dWeight, dBias, dOutput, input, Weight.Value, _mean.For(batch, time), _rstd.For(batch, time));
    }
}

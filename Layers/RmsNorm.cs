using LoraRuntime.Layers.Inference;

namespace LoraRuntime.Layers;

/// <summary>What a block's norms and the final norm offer, whichever kind they are (<see cref="NormKind"/>).</summary>
internal interface INorm
{
    /// <summary>The module path.</summary>
    string Name { get; }

    /// <summary>w [C].</summary>
    Parameter Weight { get; }

    /// <summary>The initial values: w = 1 (and b = 0).</summary>
    void InitializeDefaults();

    /// <summary>output [B, T, C] = norm(input [B, T, C]).</summary>
    void Forward(Tensor output, Tensor input);

    /// <summary>dInput += ∂L/∂input; the parameters' gradients += theirs unless frozen. Needs the forward pass of this input just before.</summary>
    void Backward(Tensor dInput, Tensor dOutput, Tensor input);

    /// <summary>The inference pass over the first <paramref name="rows"/> rows of a serving step.</summary>
    void Infer(InferenceStep step, RowBuffer output, RowBuffer input, int rows);

    /// <summary>The norm of <paramref name="kind"/> over <paramref name="channels"/>, declared under <paramref name="name"/>.</summary>
    static INorm Create(NormKind kind, ParameterSet parameters, Activations activations, string name, int channels, float epsilon) => kind switch
    {
        NormKind.LayerNorm => new LayerNorm(parameters, activations, name, channels, epsilon),
        NormKind.RmsNorm => new RmsNorm(parameters, activations, name, channels, epsilon),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "expected LayerNorm or RmsNorm"),
    };
}

/// <summary>
/// RMS normalisation over C (Llama's RMSNorm): y = x·rstd ⊙ w, rstd = 1/√(mean(x²) + ε). Keeps rstd [B, T] for the
/// backward pass.
/// </summary>
internal sealed class RmsNorm : INorm
{
    private readonly Activations _activations;
    private readonly ActivationBuffer _rstd, _discardedWeight;

    /// <summary>Declares w [<paramref name="channels"/>] (1 after <see cref="InitializeDefaults"/>) and rstd.</summary>
    public RmsNorm(ParameterSet parameters, Activations activations, string name, int channels, float epsilon = 1e-6f)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(activations);
        Guard.Positive(channels, nameof(channels));
        _activations = activations;
        Name = name;
        Channels = channels;
        Epsilon = epsilon;
        Weight = parameters.Add(name + ".weight", channels);
        _rstd = activations.Add(name + ".rstd", (b, t) => new Shape(b, t));
        // A frozen norm still back-propagates to its input; the primitive's dw then lands here.
        _discardedWeight = activations.AddGradient(name + ".dweight.discarded", (_, _) => new Shape(channels));
    }

    /// <inheritdoc/>
    public string Name { get; }

    /// <summary>C.</summary>
    public int Channels { get; }

    /// <summary>ε added to the mean square.</summary>
    public float Epsilon { get; }

    /// <inheritdoc/>
    public Parameter Weight { get; }

    private Backend Backend => Weight.Owner.Backend;

    /// <inheritdoc/>
    public void InitializeDefaults() => Backend.Fill(Weight.Value, 1f);

    /// <inheritdoc/>
    public void Forward(Tensor output, Tensor input)
    {
        var (batch, time) = Guard.Input(_activations, input, nameof(input), Channels);
        Guard.Sequence(output, nameof(output), batch, time, Channels);
        Backend.RmsNormForward(output, _rstd.For(batch, time), input, Weight.Value, Epsilon);
    }

    /// <inheritdoc/>
    public void Backward(Tensor dInput, Tensor dOutput, Tensor input)
    {
        var (batch, time) = Guard.Input(_activations, input, nameof(input), Channels);
        Guard.Sequence(dOutput, nameof(dOutput), batch, time, Channels);
        Guard.Sequence(dInput, nameof(dInput), batch, time, Channels);
        Tensor dWeight = Weight.HasGradient ? Weight.Gradient : _discardedWeight.For(1, 1);
        Backend.RmsNormBackward(dInput, dWeight, dOutput, input, Weight.Value, _rstd.For(batch, time));
    }

    /// <inheritdoc/>
    public void Infer(InferenceStep step, RowBuffer output, RowBuffer input, int rows) =>
        Backend.RmsNormForward(output.Rows(rows), step.Rstd.Rows(rows), input.Rows(rows), Weight.Value, Epsilon);
}

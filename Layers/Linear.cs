using LoraRuntime.Layers.Adapters;

namespace LoraRuntime.Layers;

/// <summary>
/// y = x Wᵀ + b with W [OC, C] and b [OC]. Frozen when its <see cref="ParameterSet"/> is reserved without
/// gradients: then backward computes dx only and W, b are never written. LoRA modules (<see cref="LoraLinear"/>)
/// attach to a Linear, or to a slice of its output rows, and add their deltas inside <see cref="Forward"/>.
/// </summary>
public sealed class Linear
{
    private readonly List<LoraLinear> _adapters = [];

    /// <summary>Declares W [<paramref name="outFeatures"/>, <paramref name="inFeatures"/>] and, optionally, b in <paramref name="parameters"/>.</summary>
    public Linear(ParameterSet parameters, string name, int inFeatures, int outFeatures, bool bias = true)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        Guard.Positive(inFeatures, nameof(inFeatures));
        Guard.Positive(outFeatures, nameof(outFeatures));
        Name = name;
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Weight = parameters.Add(name + ".weight", outFeatures, inFeatures);
        Bias = bias ? parameters.Add(name + ".bias", outFeatures) : null;
    }

    /// <summary>The module path ("blocks.0.mlp.fc").</summary>
    public string Name { get; }

    /// <summary>C, the input width.</summary>
    public int InFeatures { get; }

    /// <summary>OC, the output width.</summary>
    public int OutFeatures { get; }

    /// <summary>W [OC, C].</summary>
    public Parameter Weight { get; }

    /// <summary>b [OC], or null without bias.</summary>
    public Parameter? Bias { get; }

    /// <summary>True when W and b receive no gradients (their set was reserved without them).</summary>
    public bool IsFrozen => !Weight.Owner.HasGradients;

    /// <summary>The LoRA modules attached to this layer, in the order their deltas are applied.</summary>
    public IReadOnlyList<LoraLinear> Adapters => _adapters;

    private Backend Backend => Weight.Owner.Backend;

    /// <summary>
    /// output [B, T, OC] = input [B, T, C] · Wᵀ, plus every attached adapter's delta, plus b. The bias comes last so
    /// that a DoRA adapter can rescale x Wᵀ + ΔW x alone, as PEFT does.
    /// </summary>
    public void Forward(Tensor output, Tensor input)
    {
        var (batch, time) = Guard.Sequence(input, nameof(input), InFeatures);
        Guard.Sequence(output, nameof(output), batch, time, OutFeatures, "OC");
        Backend.MatMul(output, input, Weight.Value, transB: Transpose.Yes);
        foreach (var adapter in _adapters) adapter.AddDelta(output, input);
        if (Bias is not null) Backend.AddBias(output, output, Bias.Value);
    }

    /// <summary>
    /// Accumulates dInput [B, T, C] += dOutput · W (skipped when <paramref name="dInput"/> is null), and, unless frozen,
    /// dW += dOutputᵀ · input and db += Σ_rows dOutput. Attached adapters run first, in reverse order; a DoRA adapter
    /// hands on its rescaled output gradient.
    /// </summary>
    public void Backward(Tensor? dInput, Tensor dOutput, Tensor input)
    {
        var (batch, time) = Guard.Sequence(input, nameof(input), InFeatures);
        Guard.Sequence(dOutput, nameof(dOutput), batch, time, OutFeatures, "OC");
        if (dInput is not null) Guard.Sequence(dInput, nameof(dInput), batch, time, InFeatures);
        for (int i = _adapters.Count - 1; i >= 0; i--) dOutput = _adapters[i].BackwardDelta(dInput, dOutput, input);
        if (dInput is not null) Backend.MatMul(dInput, dOutput, Weight.Value, beta: 1f);
        if (IsFrozen) return;
        Backend.MatMul(Weight.Gradient, dOutput, input, transA: Transpose.Yes, beta: 1f);
        if (Bias is not null) Backend.BiasBackward(Bias.Gradient, dOutput);
    }

    /// <summary>Registers a LoRA module; called by <see cref="LoraLinear"/>'s constructor.</summary>
    internal void Attach(LoraLinear adapter) => _adapters.Add(adapter);

    /// <summary>Unregisters a LoRA module that never received an adapter.</summary>
    internal void Detach(LoraLinear adapter) => _adapters.Remove(adapter);

    /// <inheritdoc/>
    public override string ToString() => $"Linear {Name} [{OutFeatures}, {InFeatures}]";
}

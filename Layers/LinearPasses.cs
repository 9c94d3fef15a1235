using LoraRuntime.Layers.Adapters;

namespace LoraRuntime.Layers;

/// <summary>
/// How a <see cref="Linear"/>'s adapters join its base product in one training-mode pass: chosen once per forward pass
/// (<see cref="Linear.Forward"/>) and run again by that pass's backward. The base product and its gradients are the
/// layer's (<see cref="Linear.BaseForward"/>, <see cref="Linear.BaseBackward"/>); a pass only says what comes around them.
/// </summary>
internal abstract class LinearPass(Linear layer)
{
    protected Linear Layer { get; } = layer;

    protected Backend Backend => Layer.Owner.Backend;

    /// <summary>output [rows, OC] from input [rows, C] (both [B, T, ·]).</summary>
    public abstract void Forward(Tensor output, Tensor input, int rows);

    /// <summary>
    /// dInput (null: not wanted) += or, without <paramref name="accumulate"/>, = ∂L/∂input; the adapters' and (unless
    /// frozen) the layer's parameter gradients += theirs. Needs this pass's forward just before.
    /// </summary>
    public abstract void Backward(Tensor? dInput, Tensor dOutput, Tensor input, int rows, bool accumulate);
}

/// <summary>No adapter applies: the base product alone, its bias in the GEMM's epilogue (dense) or added after (factored).</summary>
internal sealed class BasePass(Linear layer) : LinearPass(layer)
{
    public override void Forward(Tensor output, Tensor input, int rows) => Layer.BaseForward(output, input, withBias: true);

    public override void Backward(Tensor? dInput, Tensor dOutput, Tensor input, int rows, bool accumulate) =>
        Layer.BaseBackward(dInput, dOutput, input, rows, accumulate ? 1f : 0f);
}

/// <summary>
/// Each applied adapter adds its delta to the base product, in order, before the bias (PEFT's unmerged forward; DoRA
/// rescales x Wᵀ + ΔW x; LoRA dropout applies to the adapter's input). Backward runs the adapters in reverse (each
/// adds its dInput share and hands on the output gradient for the base: DoRA's rescaled one), then the base.
/// </summary>
internal sealed class DeltaPass(Linear layer) : LinearPass(layer)
{
    public override void Forward(Tensor output, Tensor input, int rows)
    {
        Layer.BaseForward(output, input, withBias: false);
        var modules = Layer.Adapters;
        for (int i = 0; i < modules.Count; i++) modules[i].Applied?.Forward(output, input); // indexed: no enumerator per pass
        if (Layer.Bias is not null) Backend.AddBias(output, output, Layer.Bias.Value);
    }

    public override void Backward(Tensor? dInput, Tensor dOutput, Tensor input, int rows, bool accumulate)
    {
        // The adapters add into dInput before the base product, so a stored dInput starts from zero.
        if (!accumulate && dInput is not null) Backend.Fill(dInput, 0f);
        var modules = Layer.Adapters;
        for (int i = modules.Count - 1; i >= 0; i--)
            if (modules[i].Applied is { } applied) dOutput = applied.Backward(dInput, dOutput, input);
        Layer.BaseBackward(dInput, dOutput, input, rows, beta: 1f);
    }
}

/// <summary>
/// Plain LoRA on a frozen dense weight over enough rows: one GEMM against the effective weight W + Σ s·BA, built each
/// pass (a copy and a rank-R update per adapter, [OC, C] work) instead of the base GEMM plus an expand s·h·Bᵀ per
/// adapter ([rows, OC] work each). Backward's dInput gets every adapter's dh·A through the same weight, in one grouped
/// call with the adapters' dA products. The buffer is one [OC, C] per layer, taken from the pool at the first fold.
/// </summary>
internal sealed class FoldedPass(Linear layer) : LinearPass(layer)
{
    private GemmProblem[] _gradients = [];
    private Tensor? _buffer;

    /// <summary>
    /// True when folding pays and is exact for this pass: a frozen dense float32 weight, every applied adapter plain LoRA
    /// without dropout in use (<see cref="LoraWeights.Foldable"/>), and rows·(C + OC) ≥ 2·C·OC (the fold's copy and
    /// update cost no more than the expands they replace).
    /// </summary>
    public static bool Applies(Linear layer, int rows)
    {
        if (layer.IsFactored || layer.StoredWeight is not null || !layer.IsFrozen || (long)rows * (layer.InFeatures + layer.OutFeatures) < 2L * layer.InFeatures * layer.OutFeatures)
            return false;
        var modules = layer.Adapters;
        for (int i = 0; i < modules.Count; i++)
            if (modules[i].Applied is { Foldable: false }) return false;
        return true;
    }

    public override void Forward(Tensor output, Tensor input, int rows)
    {
        var weight = Layer.Owner.Scratch(ref _buffer, new Shape(Layer.OutFeatures, Layer.InFeatures));
        var modules = Layer.Adapters;
        Backend.Copy(weight, Layer.Weight.Value);
        for (int i = 0; i < modules.Count; i++) modules[i].Applied?.FoldInto(weight);
        Layer.ProductForward(output, input, weight, withBias: true);
        // Backward's dB needs each adapter's h = x Aᵀ (the output came from the effective weight).
        for (int i = 0; i < modules.Count; i++) modules[i].Applied?.ForwardFolded(input);
    }

    public override void Backward(Tensor? dInput, Tensor dOutput, Tensor input, int rows, bool accumulate)
    {
        var modules = Layer.Adapters;
        if (_gradients.Length < modules.Count + 1) _gradients = new GemmProblem[modules.Count + 1];
        // Each adapter's dB and dh now, its dA beside the base dInput product, which through the effective weight
        // already carries every dh · A: one grouped call shares the small products out with the large one.
        int count = 0;
        for (int i = modules.Count - 1; i >= 0; i--)
            if (modules[i].Applied is { } applied) _gradients[count++] = applied.BackwardFolded(dOutput, input);
        if (dInput is not null)
            _gradients[count++] = new GemmProblem(dInput, dOutput, _buffer!, rows, Layer.InFeatures, Layer.OutFeatures, beta: accumulate ? 1f : 0f);
        Backend.GemmGrouped(_gradients.AsSpan(0, count));
        _gradients.AsSpan().Clear(); // no tensor kept alive past the call
    }
}

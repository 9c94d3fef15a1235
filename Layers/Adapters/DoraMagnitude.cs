namespace LoraRuntime.Layers.Adapters;

/// <summary>
/// DoRA's magnitude on a whole linear layer, as PEFT's DoraLinearLayer: with the row norms n = ‖W + s·BA‖ (one per
/// output feature, treated as constants in the backward pass: PEFT detaches them) and g = m / n,
/// y = b + g ⊙ (x Wᵀ + s·(x Aᵀ) Bᵀ). Merging folds g into W.
/// </summary>
internal sealed class DoraMagnitude
{
    private readonly LoraWeights _weights;
    private readonly ActivationBuffer _directionScratch, _norm, _scale, _columnSums, _mergedNorm, _combined, _dCombined;
    private Tensor? _direction;

    public DoraMagnitude(LoraWeights weights, ParameterSet parameters, Activations scratch, ActivationBuffer directionScratch)
    {
        _weights = weights;
        _directionScratch = directionScratch;
        string path = weights.Module.Path;
        int outFeatures = weights.Module.OutFeatures;
        Magnitude = parameters.Add(path + ".lora_magnitude_vector", outFeatures);
        Func<int, int, Shape> perRow = (_, _) => new Shape(outFeatures), rows = (b, t) => new Shape(b, t, outFeatures);
        _norm = scratch.Add(path + ".dora.norm", perRow);
        _scale = scratch.Add(path + ".dora.scale", perRow);
        _columnSums = scratch.Add(path + ".dora.sums", perRow);
        _mergedNorm = scratch.Add(path + ".dora.merged_norm", perRow);
        _combined = scratch.Add(path + ".dora.combined", rows);
        _dCombined = scratch.AddGradient(path + ".dora.dcombined", rows);
    }

    /// <summary>m [out].</summary>
    public Parameter Magnitude { get; }

    private Backend Backend => Magnitude.Owner.Backend;

    /// <summary>m = ‖W + s·BA‖ per row: the layer starts as its base plus the plain LoRA delta.</summary>
    public void Initialize() => Backend.RowNorms(Magnitude.Value, Direction());

    /// <summary>n = ‖W + s·BA‖ and g = m / n for the current A, B and m.</summary>
    public void Refresh()
    {
        Tensor norm = _norm.For(1, 1);
        Backend.RowNorms(norm, Direction());
        Backend.Divide(_scale.For(1, 1), Magnitude.Value, norm);
    }

    /// <summary>On entry output holds u = x Wᵀ + s·(x Aᵀ) Bᵀ (no bias); keeps u and leaves g ⊙ u.</summary>
    public void Forward(Tensor output, int batch, int time)
    {
        Backend.Copy(_combined.For(batch, time), output);
        Backend.ScaleColumns(output, output, _scale.For(1, 1));
    }

    /// <summary>dm += Σ_rows dy ⊙ u / n; returns du = g ⊙ dy, the gradient that flows on into the LoRA path and the base.</summary>
    public Tensor Backward(Tensor dOutput, int batch, int time)
    {
        Tensor sums = _columnSums.For(1, 1), dCombined = _dCombined.For(batch, time);
        Backend.Fill(sums, 0f);
        Backend.ColumnDot(sums, dOutput, _combined.For(batch, time));
        Backend.Divide(sums, sums, _norm.For(1, 1));
        Backend.Add(Magnitude.Gradient, Magnitude.Gradient, sums);
        Backend.ScaleColumns(dCombined, dOutput, _scale.For(1, 1));
        return dCombined;
    }

    /// <summary>weight ← g ⊙ (weight + s·BA) with n taken from weight + s·BA, and n kept for <see cref="Unmerge"/>.</summary>
    public void Merge(Tensor weight)
    {
        Tensor norm = _mergedNorm.For(1, 1), scale = _scale.For(1, 1);
        _weights.AddDelta(weight, 1f);
        Backend.RowNorms(norm, weight);
        Backend.Divide(scale, Magnitude.Value, norm);
        Backend.ScaleRows(weight, weight, scale);
    }

    /// <summary>weight ← weight · n / m − s·BA with the n of the merge.</summary>
    public void Unmerge(Tensor weight)
    {
        Tensor inverse = _scale.For(1, 1);
        Backend.Divide(inverse, _mergedNorm.For(1, 1), Magnitude.Value);
        Backend.ScaleRows(weight, weight, inverse);
        _weights.AddDelta(weight, -1f);
    }

    /// <summary>W + s·BA in the adapter's shared scratch.</summary>
    private Tensor Direction()
    {
        var module = _weights.Module;
        _direction ??= _directionScratch.For(1, 1).View(0, new Shape(module.OutFeatures, module.InFeatures));
        Backend.Copy(_direction, module.Base.Weight.Value);
        _weights.AddDelta(_direction, 1f);
        return _direction;
    }
}

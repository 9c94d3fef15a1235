namespace LoraRuntime.Layers.Adapters;

/// <summary>
/// DoRA's magnitude on a linear layer or a slice of its output rows (q of a fused QKV projection: Llama's q_proj), as
/// PEFT's DoraLinearLayer: with the row norms n = ‖W + s·BA‖ (one per output feature of the module, treated as
/// constants in the backward pass: PEFT detaches them) and g = m / n, y = b + g ⊙ (x Wᵀ + s·(x Aᵀ) Bᵀ) on the module's
/// output columns, the others untouched. Merging folds g into the module's rows of W.
/// </summary>
internal sealed class DoraMagnitude
{
    private readonly LoraWeights _weights;
    private readonly ActivationBuffer _directionScratch, _norm, _scale, _columnSums, _mergedNorm, _combined, _dCombined;
    private readonly ActivationBuffer? _columnScale; // a slice's g over the layer's columns (1 outside); a whole layer's is _scale itself
    private Tensor? _direction, _baseRows, _scaleInColumns, _sumsOfModule;

    public DoraMagnitude(LoraWeights weights, ParameterSet parameters, Activations scratch, ActivationBuffer directionScratch)
    {
        _weights = weights;
        _directionScratch = directionScratch;
        string path = weights.Module.Path;
        int outFeatures = weights.Module.OutFeatures, layerOut = weights.Module.Base.OutFeatures;
        Magnitude = parameters.Add(path + ".lora_magnitude_vector", outFeatures);
        Func<int, int, Shape> perRow = (_, _) => new Shape(outFeatures), perColumn = (_, _) => new Shape(layerOut), rows = (b, t) => new Shape(b, t, layerOut);
        _norm = scratch.Add(path + ".dora.norm", perRow);
        _scale = scratch.Add(path + ".dora.scale", perRow);
        if (!weights.Module.IsWholeLayer) _columnScale = scratch.Add(path + ".dora.column_scale", perColumn);
        _columnSums = scratch.Add(path + ".dora.sums", perColumn);
        _mergedNorm = scratch.Add(path + ".dora.merged_norm", perRow);
        _combined = scratch.Add(path + ".dora.combined", rows);
        _dCombined = scratch.AddGradient(path + ".dora.dcombined", rows);
    }

    /// <summary>g over the layer's output columns.</summary>
    private Tensor ColumnScale => (_columnScale ?? _scale).For(1, 1);

    /// <summary>m [out].</summary>
    public Parameter Magnitude { get; }

    private Backend Backend => Magnitude.Owner.Backend;

    /// <summary>m = ‖W + s·BA‖ per row: the layer starts as its base plus the plain LoRA delta.</summary>
    public void Initialize() => Backend.RowNorms(Magnitude.Value, Direction());

    /// <summary>n = ‖W + s·BA‖ and g = m / n for the current A, B and m, and g over the layer's columns.</summary>
    public void Refresh()
    {
        Tensor norm = _norm.For(1, 1), scale = _scale.For(1, 1);
        Backend.RowNorms(norm, Direction());
        Backend.Divide(scale, Magnitude.Value, norm);
        if (_columnScale is null) return;
        var module = _weights.Module;
        Tensor columns = _columnScale.For(1, 1);
        _scaleInColumns ??= columns.View(module.OutputOffset, new Shape(module.OutFeatures));
        Backend.Fill(columns, 1f);
        Backend.Copy(_scaleInColumns, scale);
    }

    /// <summary>On entry output holds u = x Wᵀ + s·(x Aᵀ) Bᵀ (no bias) on the module's columns; keeps u and leaves g ⊙ u there.</summary>
    public void Forward(Tensor output, int batch, int time)
    {
        Backend.Copy(_combined.For(batch, time), output);
        Backend.ScaleColumns(output, output, ColumnScale);
    }

    /// <summary>dm += Σ_rows dy ⊙ u / n over the module's columns; returns du = g ⊙ dy, the gradient that flows on into the LoRA path and the base.</summary>
    public Tensor Backward(Tensor dOutput, int batch, int time)
    {
        var module = _weights.Module;
        Tensor sums = _columnSums.For(1, 1), dCombined = _dCombined.For(batch, time);
        Backend.Fill(sums, 0f);
        Backend.ColumnDot(sums, dOutput, _combined.For(batch, time));
        _sumsOfModule ??= sums.View(module.OutputOffset, new Shape(module.OutFeatures));
        Backend.Divide(_sumsOfModule, _sumsOfModule, _norm.For(1, 1));
        Backend.Add(Magnitude.Gradient, Magnitude.Gradient, _sumsOfModule);
        Backend.ScaleColumns(dCombined, dOutput, ColumnScale);
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

    /// <summary>W + s·BA of the module's rows, in the adapter's shared scratch.</summary>
    private Tensor Direction()
    {
        var module = _weights.Module;
        var shape = new Shape(module.OutFeatures, module.InFeatures);
        _direction ??= _directionScratch.For(1, 1).View(0, shape);
        if (module.Base.StoredWeight is { } stored) Backend.Dequantize(_direction, stored, module.OutputOffset);
        else
        {
            _baseRows ??= module.Base.Weight.Value.View((long)module.OutputOffset * module.InFeatures, shape);
            Backend.Copy(_direction, _baseRows);
        }
        _weights.AddDelta(_direction, 1f);
        return _direction;
    }
}

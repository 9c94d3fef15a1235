namespace LoraRuntime.Layers;

/// <summary>
/// A linear projection an adapter can target, by module path: the whole <paramref name="Linear"/>, or the rows
/// [<paramref name="OutputOffset"/>, <paramref name="OutputOffset"/> + <paramref name="OutputFeatures"/>) of its
/// weight, i.e. those columns of its output (q, k and v are slices of the fused QKV projection).
/// </summary>
/// <param name="Path">The module path ("blocks.0.attn.q").</param>
/// <param name="Linear">The projection.</param>
/// <param name="OutputOffset">The first output feature (weight row) of the slice.</param>
/// <param name="OutputFeatures">The slice's width.</param>
/// <param name="InAllLinear">
/// Whether PEFT's "all-linear" selects it: the whole projections of a GPT-2-style block (its modules are fused), the q, k,
/// v, o, gate, up and down modules of a Llama-family block (Hugging Face keeps those separate).
/// </param>
internal sealed record LinearTarget(string Path, Linear Linear, int OutputOffset, int OutputFeatures, bool InAllLinear)
{
    /// <summary>The whole projection, selected by "all-linear".</summary>
    public LinearTarget(string path, Linear linear) : this(path, linear, 0, linear.OutFeatures, true) { }

    /// <summary>A slice, not selected by "all-linear".</summary>
    public LinearTarget(string path, Linear linear, int outputOffset, int outputFeatures) : this(path, linear, outputOffset, outputFeatures, false) { }

    /// <summary>True when the target is part of its projection's output rather than all of it.</summary>
    public bool IsSlice => OutputOffset != 0 || OutputFeatures != Linear.OutFeatures;

    /// <summary>The last segment of the path ("q" of "blocks.0.attn.q").</summary>
    public string ShortName => Path[(Path.LastIndexOf('.') + 1)..];
}

/// <summary>A model that names its linear projections, so that adapters can be attached to it by target names.</summary>
internal interface ILinearHost
{
    /// <summary>Every projection an adapter may target (whole layers and named slices).</summary>
    IEnumerable<LinearTarget> LinearTargets { get; }

    /// <summary>The model's activations: adapters reserve their own for the same maximum (B, T).</summary>
    Activations Activations { get; }
}

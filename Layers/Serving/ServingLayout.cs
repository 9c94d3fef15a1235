namespace LoraRuntime.Layers.Serving;

/// <summary>
/// How serving names a <see cref="GptModel"/>'s projections: every LoRA target by its module path (the base module's
/// name, as training and PEFT files use it), and the naming of the checkpoint the model came from, which its PEFT
/// adapters follow. A served adapter's modules are found through the projection they adapt (<see cref="Linear.Index"/>).
/// </summary>
internal sealed class ServingLayout
{
    private readonly Dictionary<string, LinearTarget> _byPath = new(StringComparer.Ordinal);

    /// <summary>
    /// The layout of <paramref name="model"/>, whose adapters name its modules as <paramref name="modelLayout"/> does
    /// (ours, or GPT-2's for a model loaded from a Hugging Face checkpoint).
    /// </summary>
    public ServingLayout(GptModel model, ModelLayout modelLayout = ModelLayout.LoraRuntime)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!Enum.IsDefined(modelLayout)) throw new ArgumentOutOfRangeException(nameof(modelLayout), modelLayout, $"modelLayout: expected {string.Join(" or ", Enum.GetNames<ModelLayout>())}; got {modelLayout}");
        Model = model;
        ModelLayout = modelLayout;
        foreach (var target in model.LinearTargets) _byPath.Add(target.Path, target);
    }

    /// <summary>The model whose weights are served.</summary>
    public GptModel Model { get; }

    /// <summary>How the model's checkpoint, and so its PEFT adapters, name its modules.</summary>
    public ModelLayout ModelLayout { get; }

    /// <summary>The projections in forward order (<see cref="Linear.Index"/> is the position here).</summary>
    public IReadOnlyList<Linear> Linears => Model.Linears;

    /// <summary>Every LoRA target by module path.</summary>
    public IEnumerable<LinearTarget> Targets => _byPath.Values;

    /// <summary>The target at <paramref name="path"/>.</summary>
    public bool TryFind(string path, out LinearTarget target) => _byPath.TryGetValue(path, out target!);
}

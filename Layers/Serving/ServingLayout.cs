namespace LoraRuntime.Layers.Serving;

/// <summary>
/// How serving addresses a <see cref="GptModel"/>'s projections: linear i = 4·layer + (0 qkv, 1 o, 2 fc, 3 proj), and
/// each linear's LoRA targets by kind, in the order <see cref="TransformerBlock.LinearTargets"/> lists them (for qkv:
/// 0 the whole projection, 1 q, 2 k, 3 v). An adapter's modules and the decoder's segmented GEMMs meet on these indices.
/// </summary>
internal sealed class ServingLayout
{
    /// <summary>At most this many targets per linear (qkv, q, k, v).</summary>
    public const int KindsPerLinear = 4;

    private readonly Dictionary<string, (int Linear, int Kind, LinearTarget Target)> _byPath = new(StringComparer.Ordinal);

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
        var linears = new List<Linear>();
        foreach (var block in model.Stack.Blocks)
        {
            Linear[] own = [block.Attention.Qkv, block.Attention.Out, block.Mlp.Fc, block.Mlp.Proj];
            int first = linears.Count;
            linears.AddRange(own);
            var kinds = new int[own.Length];
            foreach (var target in block.LinearTargets)
            {
                int j = Array.IndexOf(own, target.Linear);
                _byPath.Add(target.Path, (first + j, kinds[j]++, target));
            }
        }
        Linears = linears;
    }

    /// <summary>The model whose weights are served.</summary>
    public GptModel Model { get; }

    /// <summary>How the model's checkpoint, and so its PEFT adapters, name its modules.</summary>
    public ModelLayout ModelLayout { get; }

    /// <summary>The projections in forward order, 4 per block.</summary>
    public IReadOnlyList<Linear> Linears { get; }

    /// <summary>Every LoRA target by module path.</summary>
    public IEnumerable<LinearTarget> Targets => _byPath.Values.Select(v => v.Target);

    /// <summary>The (linear, kind) of the target at <paramref name="path"/>.</summary>
    public bool TryFind(string path, out int linear, out int kind)
    {
        bool found = _byPath.TryGetValue(path, out var entry);
        (linear, kind) = (entry.Linear, entry.Kind);
        return found;
    }
}

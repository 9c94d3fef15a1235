using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;

namespace LoraRuntime.Tests.Layers;

/// <summary>Describes adapters to the float64 reference.</summary>
internal static class LoraReference
{
    /// <summary>The reference's view of <paramref name="weights"/>; DoRA's norms are fixed at the current values.</summary>
    public static ReferenceAdapter Describe(LoraWeights weights, bool withDropout = false)
    {
        var module = weights.Module;
        double[]? norms = null;
        if (weights.Magnitude is not null)
            norms = ReferenceModel.DoraNorms(
                Support.Reference.ToDouble(module.Base.Weight.Value.ToArray()).AsSpan(module.OutputOffset * module.InFeatures, module.OutFeatures * module.InFeatures).ToArray(),
                Support.Reference.ToDouble(weights.A.Value.ToArray()),
                Support.Reference.ToDouble(weights.B.Value.ToArray()), module.OutFeatures, module.InFeatures, weights.Rank, weights.Scale);
        return new ReferenceAdapter(weights.A.Name, weights.B.Name, module.OutputOffset, module.OutFeatures, weights.Rank, weights.Scale,
            weights.Magnitude?.Name, norms, withDropout ? (weights.MaskSeed, weights.Options.Dropout) : null);
    }

    /// <summary>A reference model over <paramref name="parameters"/> with the active adapter of each module.</summary>
    public static ReferenceModel With(Dictionary<string, double[]> parameters, IEnumerable<LoraLinear> modules, bool withDropout = false)
    {
        var model = new ReferenceModel(parameters);
        foreach (var module in modules)
        {
            if (!model.Adapters.TryGetValue(module.Base.Name, out var list)) model.Adapters[module.Base.Name] = list = [];
            if (module.Active is { } active) list.Add(Describe(active, withDropout));
        }
        return model;
    }

    /// <summary>W + sign·s·BA of a module's slice in float64, as the whole base weight.</summary>
    public static double[] Merged(LoraWeights weights, double[] weight)
    {
        var module = weights.Module;
        double[] a = Support.Reference.ToDouble(weights.A.Value.ToArray()), b = Support.Reference.ToDouble(weights.B.Value.ToArray());
        var merged = (double[])weight.Clone();
        int cin = module.InFeatures, r = weights.Rank;
        for (int o = 0; o < module.OutFeatures; o++)
            for (int c = 0; c < cin; c++)
            {
                double delta = 0;
                for (int k = 0; k < r; k++) delta += b[o * r + k] * a[k * cin + c];
                merged[(module.OutputOffset + o) * cin + c] += weights.Scale * delta;
            }
        return merged;
    }
}

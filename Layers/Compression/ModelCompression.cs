using LoraRuntime.Layers.Adapters;

namespace LoraRuntime.Layers.Compression;

/// <summary>
/// One layer of a compression report. Parameters count the weight alone (the bias is kept either way).
/// </summary>
/// <param name="Layer">The module path ("blocks.0.mlp.fc").</param>
/// <param name="OutFeatures">m = OC.</param>
/// <param name="InFeatures">n = C.</param>
/// <param name="Rank">K, the rank the choice gave.</param>
/// <param name="Factored">
/// False when the layer stayed dense: with <see cref="CompressionOptions.KeepDenseIfLarger"/>, factors with
/// K·(m + n) ≥ m·n would not be smaller.
/// </param>
/// <param name="KeptEnergy">Σ_{i&lt;K} σᵢ² / ‖W‖²_F (1 for a layer kept dense).</param>
/// <param name="RelativeError">‖W − U·V‖_F / ‖W‖_F (0 for a layer kept dense).</param>
/// <param name="ParametersBefore">m·n.</param>
/// <param name="ParametersAfter">K·(m + n) (more than m·n when K is high), or m·n when kept dense.</param>
internal sealed record CompressedLayer(string Layer, int OutFeatures, int InFeatures, int Rank, bool Factored, double KeptEnergy,
    double RelativeError, long ParametersBefore, long ParametersAfter);

/// <summary>What to compress and how.</summary>
/// <param name="Choice">The rank of every chosen layer, or the energy it keeps.</param>
/// <param name="Targets">Whole linear layers by name as <see cref="LoraConfig.TargetModules"/> ("fc", "proj", "attn.o", …), or all-linear.</param>
/// <param name="KeepDenseIfLarger">Leave a layer dense when its factors would hold at least as many parameters as W.</param>
internal sealed record CompressionOptions(RankChoice Choice, IReadOnlyList<string> Targets, bool KeepDenseIfLarger = false);

/// <summary>
/// <c>lora compress</c>'s library side: replaces chosen linear layers of a model by their truncated-SVD factors
/// U [OC, K] · V [K, C] (see <see cref="LowRankFactorization"/>), keeping every other parameter, each bias included.
/// The result is an ordinary <see cref="GptModel"/> whose config lists the factored layers
/// (<see cref="GptConfig.FactoredRanks"/>), so it saves, loads and runs wherever a model does.
/// </summary>
internal static class ModelCompression
{
    /// <summary>
    /// The compressed copy of <paramref name="source"/> (an inference model for batches of up to
    /// <paramref name="maxBatch"/>; the caller disposes it) and the per-layer report. Every option is checked before
    /// any SVD runs.
    /// </summary>
    public static (GptModel Model, IReadOnlyList<CompressedLayer> Layers) Compress(GptModel source, CompressionOptions options, int maxBatch)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(options);
        var layers = SelectLayers(source, options.Targets);
        if (!options.Choice.ByEnergy)
            foreach (var linear in layers)
            {
                int limit = Math.Min(linear.InFeatures, linear.OutFeatures);
                if (options.Choice.Rank > limit)
                    throw new ArgumentOutOfRangeException("rank", options.Choice.Rank,
                        $"rank: K = {options.Choice.Rank} is above min(OC, C) = {limit} for {linear.Name} [{linear.OutFeatures}, {linear.InFeatures}]; choose K in 1..{limit}");
            }
        var report = new List<CompressedLayer>(layers.Count);
        var factors = new Dictionary<string, Factorization>(StringComparer.Ordinal);
        foreach (var linear in layers)
        {
            var f = LowRankFactorization.Factor(linear.Weight.Value, options.Choice, linear.Name);
            int m = linear.OutFeatures, n = linear.InFeatures;
            long before = (long)m * n, after = (long)f.Rank * (m + n);
            bool factored = !options.KeepDenseIfLarger || after < before;
            if (factored) factors.Add(linear.Name, f);
            report.Add(new CompressedLayer(linear.Name, m, n, f.Rank, factored, factored ? f.KeptEnergy : 1, factored ? f.RelativeError : 0,
                before, factored ? after : before));
        }
        var ranks = new Dictionary<string, int>(source.Config.FactoredRanks, StringComparer.Ordinal);
        foreach (var (name, f) in factors) ranks.Add(name, f.Rank);
        var model = new GptModel(source.Parameters.Backend, source.Config with { FactoredRanks = ranks }, maxBatch, training: false, trainParameters: false);
        try
        {
            var backend = model.Parameters.Backend;
            foreach (var p in model.Parameters.Parameters)
            {
                if (source.Parameters.TryGet(p.Name, out var original)) backend.Copy(p.Value, original.Value);
                else if (p.Name.EndsWith(".weight_u", StringComparison.Ordinal)) p.Value.CopyFrom(factors[p.Name[..^".weight_u".Length]].U);
                else if (p.Name.EndsWith(".weight_v", StringComparison.Ordinal)) p.Value.CopyFrom(factors[p.Name[..^".weight_v".Length]].V);
                else throw new InvalidOperationException($"{p.Name}: the compressed model has a parameter the source and the factors lack");
            }
        }
        catch
        {
            model.Dispose();
            throw;
        }
        return (model, report);
    }

    /// <summary>The whole, dense linear layers <paramref name="targets"/> selects, in model order.</summary>
    public static List<Linear> SelectLayers(GptModel model, IReadOnlyList<string> targets)
    {
        ArgumentNullException.ThrowIfNull(targets);
        if (targets.Count == 0) throw new ArgumentException($"targets: expected at least one layer name (qkv, o, fc, proj) or {LoraConfig.AllLinear}", nameof(targets));
        var whole = model.LinearTargets.Where(t => !t.IsSlice).ToList();
        bool all = targets is [LoraConfig.AllLinear];
        if (!all)
            foreach (string name in targets)
            {
                if (whole.Any(t => LoraConfig.Selects(name, t.Path))) continue;
                bool slice = model.LinearTargets.Any(t => t.IsSlice && LoraConfig.Selects(name, t.Path));
                throw new ArgumentException(slice
                    ? $"targets: '{name}' is a slice of the fused qkv projection; compression factors whole layers (qkv, o, fc, proj)"
                    : $"targets: '{name}' matches no linear layer; known layers are {string.Join(", ", whole.Select(t => t.ShortName).Distinct())} or {LoraConfig.AllLinear}",
                    nameof(targets));
            }
        var selected = whole.Where(t => all || targets.Any(name => LoraConfig.Selects(name, t.Path))).Select(t => t.Linear).ToList();
        foreach (var linear in selected)
            if (linear.IsFactored)
                throw new ArgumentException($"targets: {linear.Name} is already factored (rank {linear.FactoredRank}); compress the original model instead", nameof(targets));
        return selected;
    }
}

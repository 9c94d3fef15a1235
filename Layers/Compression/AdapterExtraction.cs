using LoraRuntime.Layers.Adapters;

namespace LoraRuntime.Layers.Compression;

/// <summary>One module of an extraction report.</summary>
/// <param name="Module">The module path ("blocks.0.attn.q").</param>
/// <param name="OutFeatures">out.</param>
/// <param name="InFeatures">in.</param>
/// <param name="Rank">R.</param>
/// <param name="KeptEnergy">Σ_{i&lt;R} σᵢ² / ‖ΔW‖²_F (1 when ΔW = 0).</param>
/// <param name="RelativeError">‖ΔW − B·A‖_F / ‖ΔW‖_F (0 when ΔW = 0).</param>
/// <param name="DeltaNorm">‖ΔW‖_F.</param>
internal sealed record ExtractedModule(string Module, int OutFeatures, int InFeatures, int Rank, double KeptEnergy, double RelativeError, double DeltaNorm);

/// <summary>
/// <c>lora extract</c>'s library side: a LoRA adapter from a fine-tuned model and its base. For each targeted module
/// ΔW = W_tuned − W_base (its rows of the projection) is factored by the SVD at rank R and split evenly,
/// B = U_R·√Σ_R [out, R] and A = √Σ_R·V_Rᵀ [R, in]; the adapter's α is R, so its scale s = α/R is exactly 1 and
/// s·B·A is the best rank-R approximation of ΔW.
/// </summary>
internal static class AdapterExtraction
{
    /// <summary>
    /// Adds adapter <paramref name="name"/> of rank <paramref name="rank"/> to <paramref name="baseModel"/> on the modules
    /// <paramref name="targets"/> selects and fills it from the difference to <paramref name="tuned"/>, which must have
    /// the same architecture. Returns the adapter's config (for <see cref="PeftAdapterFiles.Save"/>), the adapter and
    /// the per-module report.
    /// </summary>
    public static (LoraConfig Config, LoraAdapter Adapter, IReadOnlyList<ExtractedModule> Modules) Extract(
        LoraModel baseModel, GptModel baseGpt, GptModel tuned, string name, int rank, IReadOnlyList<string> targets)
    {
        ArgumentNullException.ThrowIfNull(baseModel);
        ArgumentNullException.ThrowIfNull(baseGpt);
        ArgumentNullException.ThrowIfNull(tuned);
        CheckSameArchitecture(baseGpt.Config, tuned.Config);
        if (rank < 1) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"rank: expected R ≥ 1; got {rank}");
        var config = new LoraConfig { TargetModules = targets, Defaults = new LoraOptions { Rank = rank, Alpha = rank } };
        var adapter = baseModel.AddAdapter(name, config);
        try
        {
            var report = new List<ExtractedModule>(adapter.Modules.Count);
            var backend = baseGpt.Parameters.Backend;
            foreach (var w in adapter.Modules)
            {
                var module = w.Module;
                var tunedLinear = tuned.Parameters[module.Base.Name + ".weight"];
                long offset = (long)module.OutputOffset * module.InFeatures;
                var shape = new Shape(module.OutFeatures, module.InFeatures);
                using var delta = backend.Allocate(module.OutFeatures, module.InFeatures);
                backend.Copy(delta, tunedLinear.Value.View(offset, shape));
                backend.Axpy(delta, -1f, module.Base.Weight.Value.View(offset, shape));
                var f = LowRankFactorization.Factor(delta, RankChoice.Fixed(rank), module.Path);
                double norm = Math.Sqrt(LowRankFactorization.SquaredNorm(delta.ToArray()));
                // PeftAdapterFiles' B is U·√Σ and A is √Σ·Vᵀ: exactly the balanced factors, and s = α/R = 1.
                w.B.Value.CopyFrom(f.U);
                w.A.Value.CopyFrom(f.V);
                report.Add(new ExtractedModule(module.Path, module.OutFeatures, module.InFeatures, rank, f.KeptEnergy, f.RelativeError, norm));
            }
            return (config, adapter, report);
        }
        catch
        {
            adapter.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The parameters in which <paramref name="tuned"/> differs from <paramref name="baseGpt"/> outside the layers the
    /// adapter's modules adapt (layer norms, embeddings, biases, untargeted projections): what an adapter cannot carry.
    /// </summary>
    public static IReadOnlyList<string> UncapturedDifferences(GptModel baseGpt, GptModel tuned, LoraAdapter adapter)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        var adapted = adapter.Modules.Select(w => w.Module.Base.Weight.Name).ToHashSet(StringComparer.Ordinal);
        var differing = new List<string>();
        foreach (var p in baseGpt.Parameters.Parameters)
            if (!adapted.Contains(p.Name) && !p.Value.ToArray().AsSpan().SequenceEqual(tuned.Parameters[p.Name].Value.ToArray()))
                differing.Add(p.Name);
        return differing;
    }

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first field in which the two architectures differ.</summary>
    public static void CheckSameArchitecture(GptConfig baseConfig, GptConfig tuned)
    {
        var fields = new (string Name, int Base, int Tuned)[]
        {
            ("vocab_size", baseConfig.Vocabulary, tuned.Vocabulary), ("n_layer", baseConfig.Layers, tuned.Layers),
            ("n_head", baseConfig.Heads, tuned.Heads), ("n_embd", baseConfig.Channels, tuned.Channels),
            ("block_size", baseConfig.BlockSize, tuned.BlockSize),
        };
        foreach (var (field, b, t) in fields)
            if (b != t) throw new ArgumentException($"tuned: {field} is {t}, but the base model's is {b}; the tuned model must share the base's architecture", nameof(tuned));
        if (baseConfig.FactoredRanks.Count > 0 || tuned.FactoredRanks.Count > 0)
            throw new ArgumentException("tuned: a compressed (factored) model has no dense weights to subtract; extract from the dense models", nameof(tuned));
    }
}

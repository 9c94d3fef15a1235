namespace LoraRuntime.Layers.Adapters;

/// <summary>How <see cref="AdapterCombination"/> combines adapters (PEFT's <c>combination_type</c>).</summary>
internal enum CombinationMethod
{
    /// <summary>A and B are each a weighted sum (equal ranks only); not the sum of the deltas when several adapters differ.</summary>
    Linear,
    /// <summary>A and B are stacked: the delta is exactly Σ wᵢ·sᵢ·Bᵢ·Aᵢ, at rank Σ Rᵢ.</summary>
    Cat,
    /// <summary>The delta Σ wᵢ·sᵢ·Bᵢ·Aᵢ is computed and truncated to rank R by its SVD.</summary>
    Svd,
}

/// <summary>
/// PEFT's <c>LoraModel.add_weighted_adapter</c> for LoRA adapters on linear layers. With cᵢ = wᵢ·sᵢ (the weight
/// given times adapter i's own scale sᵢ = αᵢ/Rᵢ, or αᵢ/√Rᵢ with rsLoRA), per module, over the adapters that have it:
/// <list type="bullet">
/// <item>linear (all Rᵢ equal, new R = that rank): A = Σ sign(cᵢ)·√|cᵢ|·Aᵢ and B = Σ √|cᵢ|·Bᵢ (for cᵢ ≥ 0 exactly
/// PEFT's √cᵢ on both; PEFT's fix for negative weights puts the sign on A);</item>
/// <item>cat (new R = Σ Rᵢ): A = [c₁A₁; c₂A₂; …] stacked by rows, B = [B₁ B₂ …] by columns, the adapters that lack
/// the module leaving zero rows and columns at the end, as PEFT does;</item>
/// <item>svd (new R = the rank asked for, else max Rᵢ): ΔW = Σ wᵢ·(sᵢ·Bᵢ·Aᵢ), U S Vᵀ = svd(ΔW), B = U_R·S_R,
/// A = V_Rᵀ (PEFT after its fix that applies each scale once).</item>
/// </list>
/// The new adapter takes adapter 0's options with r = lora_alpha = new R and rsLoRA off (PEFT's fix for inherited
/// rsLoRA), so its scale is exactly 1; target_modules is the union. A single adapter always combines linearly.
/// Refused, as PEFT refuses or would silently get wrong: different ranks for linear, DoRA adapters, rank or α
/// patterns, modules whose shapes differ between adapters, and an svd rank above a module's min(out, in).
/// </summary>
internal static class AdapterCombination
{
    /// <summary>The combined adapter; <paramref name="backend"/> computes the SVDs.</summary>
    public static AdapterTensors Combine(Backend backend, IReadOnlyList<(AdapterTensors Adapter, float Weight)> adapters, CombinationMethod method,
        int? svdRank = null)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(adapters);
        if (adapters.Count == 0) throw new ArgumentException("adapters: expected at least one adapter to combine", nameof(adapters));
        for (int i = 0; i < adapters.Count; i++) Validate(adapters[i].Adapter, adapters[i].Weight, i);
        if (method != CombinationMethod.Svd && svdRank is not null)
            throw new ArgumentException($"svdRank: a rank is only chosen by the svd method, not by {method.ToString().ToLowerInvariant()}", nameof(svdRank));
        // As in PEFT, a single adapter always combines linearly (an svd rank is then ignored).
        if (adapters.Count == 1) (method, svdRank) = (CombinationMethod.Linear, null);
        var ranks = adapters.Select(a => a.Adapter.Config.Defaults.Rank).ToArray();
        int newRank = method switch
        {
            CombinationMethod.Linear when ranks.Distinct().Count() != 1 => throw new ArgumentException(
                $"method: linear combination needs adapters of one rank (as PEFT requires); got r = {string.Join(", ", ranks)}; use cat or svd", nameof(method)),
            CombinationMethod.Linear => ranks[0],
            CombinationMethod.Cat => ranks.Sum(),
            CombinationMethod.Svd when svdRank is < 1 => throw new ArgumentOutOfRangeException(nameof(svdRank), svdRank, $"svdRank: expected R ≥ 1; got {svdRank}"),
            CombinationMethod.Svd => svdRank ?? ranks.Max(),
            _ => throw new ArgumentOutOfRangeException(nameof(method), method, "method: expected linear, cat or svd"),
        };

        var paths = adapters.SelectMany(a => a.Adapter.Modules.Select(m => m.Path)).Distinct(StringComparer.Ordinal).ToList();
        var modules = new List<AdapterModuleTensors>(paths.Count);
        foreach (string path in paths)
        {
            var present = new List<(AdapterModuleTensors Module, double C, double Weight, double Scale)>();
            foreach (var (adapter, weight) in adapters)
                if (adapter.Modules.FirstOrDefault(m => m.Path == path) is { } m)
                    present.Add((m, (double)weight * adapter.Config.Defaults.Scale, weight, adapter.Config.Defaults.Scale));
            var first = present[0].Module;
            foreach (var (m, _, _, _) in present)
                if (m.InFeatures != first.InFeatures || m.OutFeatures != first.OutFeatures)
                    throw new ArgumentException(
                        $"adapters: {path} is [{first.OutFeatures}, {first.InFeatures}] in one adapter and [{m.OutFeatures}, {m.InFeatures}] in another; the adapters are for different models", nameof(adapters));
            int limit = Math.Min(first.InFeatures, first.OutFeatures);
            if (method == CombinationMethod.Svd && newRank > limit)
                throw new ArgumentOutOfRangeException(nameof(svdRank), newRank,
                    $"svdRank: R = {newRank} is above min(out, in) = {limit} for {path} [{first.OutFeatures}, {first.InFeatures}]");
            modules.Add(method switch
            {
                CombinationMethod.Linear => Linear(path, present.Select(p => (p.Module, p.C)).ToList(), newRank),
                CombinationMethod.Cat => Cat(path, present.Select(p => (p.Module, p.C)).ToList(), newRank),
                _ => Svd(backend, path, present.Select(p => (p.Module, p.Weight, p.Scale)).ToList(), newRank),
            });
        }
        var config0 = adapters[0].Adapter.Config;
        var config = new LoraConfig
        {
            TargetModules = adapters.SelectMany(a => a.Adapter.Config.TargetModules).Distinct(StringComparer.Ordinal).ToList(),
            Defaults = config0.Defaults with { Rank = newRank, Alpha = newRank, UseRsLora = false },
        };
        return new AdapterTensors(config, adapters[0].Adapter.BaseModel, modules);
    }

    private static void Validate(AdapterTensors adapter, float weight, int index)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        var config = adapter.Config;
        if (!float.IsFinite(weight)) throw new ArgumentException($"adapters: the weight of adapter {index} must be finite; got {weight}", "adapters");
        if (config.Defaults.UseDora)
            throw new ArgumentException($"adapters: adapter {index} uses DoRA; combining DoRA adapters is not supported (PEFT's result would drop the magnitudes)", "adapters");
        if (config.RankPattern.Count > 0 || config.AlphaPattern.Count > 0)
            throw new ArgumentException($"adapters: adapter {index} has a rank or α pattern; combining adapters with per-module ranks or α is not supported", "adapters");
        foreach (var m in adapter.Modules)
            if (m.Rank != config.Defaults.Rank)
                throw new InvalidDataException($"adapter {index}: {m.Path} has rank {m.Rank} but its config says r = {config.Defaults.Rank}");
    }

    private static AdapterModuleTensors Linear(string path, List<(AdapterModuleTensors Module, double C)> present, int rank)
    {
        var first = present[0].Module;
        var a = new double[rank * first.InFeatures];
        var b = new double[first.OutFeatures * rank];
        foreach (var (m, c) in present)
        {
            double root = Math.Sqrt(Math.Abs(c)), signed = c < 0 ? -root : root;
            for (int i = 0; i < a.Length; i++) a[i] += signed * m.A[i];
            for (int i = 0; i < b.Length; i++) b[i] += root * m.B[i];
        }
        return new AdapterModuleTensors(path, rank, first.InFeatures, first.OutFeatures, ToFloat(a), ToFloat(b));
    }

    private static AdapterModuleTensors Cat(string path, List<(AdapterModuleTensors Module, double C)> present, int rank)
    {
        var first = present[0].Module;
        int n = first.InFeatures, outFeatures = first.OutFeatures;
        var a = new float[rank * n];
        var b = new float[outFeatures * rank];
        int row = 0;
        foreach (var (m, c) in present)
        {
            for (int r = 0; r < m.Rank; r++)
                for (int j = 0; j < n; j++) a[(row + r) * n + j] = (float)(c * m.A[r * n + j]);
            for (int i = 0; i < outFeatures; i++)
                for (int r = 0; r < m.Rank; r++) b[i * rank + row + r] = m.B[i * m.Rank + r];
            row += m.Rank;
        }
        return new AdapterModuleTensors(path, rank, n, outFeatures, a, b);
    }

    private static AdapterModuleTensors Svd(Backend backend, string path, List<(AdapterModuleTensors Module, double Weight, double Scale)> present, int rank)
    {
        var first = present[0].Module;
        int n = first.InFeatures, outFeatures = first.OutFeatures, k = Math.Min(n, outFeatures);
        // ΔW [out, in] = Σ wᵢ·sᵢ·Bᵢ·Aᵢ in float64.
        var delta = new double[outFeatures * n];
        foreach (var (m, weight, scale) in present)
            for (int i = 0; i < outFeatures; i++)
                for (int r = 0; r < m.Rank; r++)
                {
                    double bir = weight * scale * m.B[i * m.Rank + r];
                    if (bir == 0) continue;
                    for (int j = 0; j < n; j++) delta[i * n + j] += bir * m.A[r * n + j];
                }
        using var d = backend.FromArray(ToFloat(delta), outFeatures, n);
        using var u = backend.Allocate(outFeatures, k);
        using var s = backend.Allocate(k);
        using var vt = backend.Allocate(k, n);
        backend.Svd(u, s, vt, d);
        float[] uh = u.ToArray(), sh = s.ToArray(), vh = vt.ToArray();
        var b = new float[outFeatures * rank];
        for (int i = 0; i < outFeatures; i++)
            for (int r = 0; r < rank; r++) b[i * rank + r] = uh[i * k + r] * sh[r];
        return new AdapterModuleTensors(path, rank, n, outFeatures, vh[..(rank * n)], b);
    }

    private static float[] ToFloat(double[] values) => Array.ConvertAll(values, v => (float)v);
}

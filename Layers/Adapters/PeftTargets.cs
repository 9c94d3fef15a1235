using System.Text.RegularExpressions;

namespace LoraRuntime.Layers.Adapters;

/// <summary>
/// PEFT's module selection, applied to a model's <see cref="LinearTarget"/>s under the module names of its layout:
/// ours as they are ("blocks.0.attn.qkv", and the slices q, k, v), GPT-2's as GPT2LMHeadModel names them
/// ("transformer.h.0.attn.c_attn"; GPT-2 has no q, k, v modules), a Llama-family checkpoint's as LlamaForCausalLM
/// (and Mistral's, Qwen2's) names them ("model.layers.0.self_attn.q_proj", "model.layers.0.mlp.gate_proj": no fused
/// qkv or gate_up modules). A list selects a name equal to an entry or ending with "." + entry; a string is a regular
/// expression over the whole name; "all-linear" selects the projections the architecture's checkpoints have as modules
/// (<see cref="LinearTarget.InAllLinear"/>); exclude_modules removes names the same way. rank_pattern and alpha_pattern keys match a name exactly,
/// else as <c>(.*\.)?(key)$</c> from its start, first key first.
/// </summary>
internal static class PeftTargets
{
    /// <summary>The name PEFT gives the module at our <paramref name="path"/> in a model of <paramref name="layout"/>, or null where it has none.</summary>
    public static string? ModuleName(ModelLayout layout, string path) => layout switch
    {
        ModelLayout.Gpt2 => Gpt2Names.ToGpt2(path) is { } name ? Gpt2Checkpoint.TransformerPrefix + name : null,
        ModelLayout.Llama => LlamaModuleName(path),
        _ => path,
    };

    private static readonly (string Ours, string Theirs)[] LlamaModules =
    [
        ("attn.q", "self_attn.q_proj"), ("attn.k", "self_attn.k_proj"), ("attn.v", "self_attn.v_proj"), ("attn.o", "self_attn.o_proj"),
        ("mlp.gate", "mlp.gate_proj"), ("mlp.up", "mlp.up_proj"), ("mlp.down", "mlp.down_proj"),
    ];

    /// <summary>"blocks.N.attn.q" → "model.layers.N.self_attn.q_proj"; null for our fused modules (qkv, gate_up), which Llama does not have.</summary>
    private static string? LlamaModuleName(string path)
    {
        if (!path.StartsWith("blocks.", StringComparison.Ordinal)) return null;
        int dot = path.IndexOf('.', "blocks.".Length);
        if (dot < 0) return null;
        string block = path["blocks.".Length..dot], rest = path[(dot + 1)..];
        foreach (var (ours, theirs) in LlamaModules)
            if (rest == ours) return $"model.layers.{block}.{theirs}";
        return null;
    }

    /// <summary>
    /// The <see cref="LoraConfig"/> that selects, in our terms, exactly the modules <paramref name="config"/> selects
    /// among <paramref name="targets"/>, with each module's rank and α: every module by its full path.
    /// <paramref name="source"/> names the file in errors.
    /// </summary>
    public static LoraConfig Resolve(PeftAdapterConfig config, IEnumerable<LinearTarget> targets, ModelLayout layout, string source)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(targets);
        var named = targets.Select(t => (Target: t, Name: ModuleName(layout, t.Path))).Where(p => p.Name is not null).ToList();
        var selected = named.Where(p => Selects(config.TargetModules, config.TargetModulesPattern, p.Name!, p.Target.InAllLinear, "target_modules", source)
            && !Selects(config.ExcludeModules, config.ExcludeModulesPattern, p.Name!, p.Target.InAllLinear, "exclude_modules", source)).ToList();
        if (config.TargetModules is { } names && names is not [LoraConfig.AllLinear])
            foreach (string name in names)
                if (!named.Any(p => p.Name == name || p.Name!.EndsWith("." + name, StringComparison.Ordinal)))
                    throw new InvalidDataException(
                        $"{source}: target_modules: '{name}' matches no module of the model; its modules are named like {string.Join(", ", named.Take(7).Select(p => p.Name))}");
        if (selected.Count == 0)
            throw new InvalidDataException($"{source}: target_modules selects no module of the model (modules are named like {named.FirstOrDefault().Name})");
        var defaults = config.Defaults;
        var ranks = new Dictionary<string, int>(StringComparer.Ordinal);
        var alphas = new Dictionary<string, float>(StringComparer.Ordinal);
        foreach (var (target, name) in selected)
        {
            if (PatternKey(config.RankPattern.Keys, name!, "rank_pattern", source) is { } rankKey) ranks[Regex.Escape(target.Path)] = config.RankPattern[rankKey];
            if (PatternKey(config.AlphaPattern.Keys, name!, "alpha_pattern", source) is { } alphaKey) alphas[Regex.Escape(target.Path)] = config.AlphaPattern[alphaKey];
        }
        return new LoraConfig
        {
            Defaults = defaults,
            TargetModules = selected.Select(p => p.Target.Path).ToList(),
            RankPattern = ranks,
            AlphaPattern = alphas,
        };
    }

    /// <summary>
    /// The PEFT configuration of <paramref name="adapter"/> (created from <paramref name="config"/>) for a model of
    /// <paramref name="layout"/>. Ours keeps the configuration's names and patterns; GPT-2's and Llama's list every adapted
    /// module by its name there, with per-module ranks and α where they differ from the defaults.
    /// </summary>
    public static PeftAdapterConfig ForAdapter(LoraAdapter adapter, LoraConfig config, ModelLayout layout, string? baseModel)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        var peft = ForConfig(config, baseModel);
        if (layout == ModelLayout.LoraRuntime) return peft;
        var o = config.Defaults;
        var names = new List<string>();
        var ranks = new Dictionary<string, int>(StringComparer.Ordinal);
        var alphas = new Dictionary<string, float>(StringComparer.Ordinal);
        foreach (var w in adapter.Modules)
        {
            string name = ModuleName(layout, w.Module.Path) ?? throw new ArgumentException(layout == ModelLayout.Gpt2
                ? $"config: {w.Module.Path} has no module in GPT-2's layout (PEFT adapts c_attn whole: target qkv, not q, k or v)"
                : $"config: {w.Module.Path} has no module in the Llama layout (its q, k, v and gate, up projections are separate: target q, k, v, gate, up)",
                nameof(config));
            names.Add(name);
            if (w.Options.Rank != o.Rank) ranks[name] = w.Options.Rank;
            if (w.Options.Alpha != o.Alpha) alphas[name] = w.Options.Alpha;
        }
        return peft with { TargetModules = names, RankPattern = ranks, AlphaPattern = alphas, FanInFanOut = layout == ModelLayout.Gpt2 };
    }

    /// <summary>The PEFT configuration of <paramref name="config"/> for our own module names: its names and patterns as they are.</summary>
    public static PeftAdapterConfig ForConfig(LoraConfig config, string? baseModel)
    {
        ArgumentNullException.ThrowIfNull(config);
        var o = config.Defaults;
        return new PeftAdapterConfig
        {
            BaseModelNameOrPath = baseModel, Rank = o.Rank, Alpha = o.Alpha, Dropout = o.Dropout, UseRsLora = o.UseRsLora, UseDora = o.UseDora,
            InitLoraWeights = PeftAdapterConfig.InitName(o),
            TargetModules = config.TargetModules, RankPattern = config.RankPattern, AlphaPattern = config.AlphaPattern,
        };
    }

    private static bool Selects(IReadOnlyList<string>? names, string? pattern, string name, bool inAllLinear, string field, string source)
    {
        if (pattern is not null)
        {
            try
            {
                return Regex.IsMatch(name, $"^(?:{pattern})$", RegexOptions.CultureInvariant);
            }
            catch (ArgumentException e)
            {
                throw new InvalidDataException($"{source}: {field}: '{pattern}' is not a valid regular expression ({e.Message})", e);
            }
        }
        if (names is null) return false;
        if (names is [LoraConfig.AllLinear]) return inAllLinear;
        foreach (string n in names)
            if (name == n || name.EndsWith("." + n, StringComparison.Ordinal)) return true;
        return false;
    }

    private static string? PatternKey(IEnumerable<string> keys, string name, string field, string source)
    {
        var list = keys.ToList();
        if (list.Contains(name)) return name;
        foreach (string key in list)
        {
            try
            {
                if (Regex.IsMatch(name, $"^(.*\\.)?({key})$", RegexOptions.CultureInvariant)) return key;
            }
            catch (ArgumentException e)
            {
                throw new InvalidDataException($"{source}: {field}: '{key}' is not a valid regular expression ({e.Message})", e);
            }
        }
        return null;
    }
}

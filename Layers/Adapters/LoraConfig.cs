using System.Text.RegularExpressions;

namespace LoraRuntime.Layers.Adapters;

/// <summary>
/// An adapter for a whole model, as PEFT's LoraConfig: the defaults of every targeted layer, which layers
/// (<see cref="TargetModules"/>), and per-layer rank and α overrides (<see cref="RankPattern"/>, <see cref="AlphaPattern"/>).
/// </summary>
internal sealed record LoraConfig
{
    /// <summary>The value of <see cref="TargetModules"/> that selects every whole linear projection (not slices).</summary>
    public const string AllLinear = "all-linear";

    /// <summary>The options of every targeted layer before the patterns apply.</summary>
    public LoraOptions Defaults { get; init; } = new();

    /// <summary>
    /// Target names: a module path's last segment ("q", "k", "v", "qkv", "o", "fc", "proj"), a path suffix
    /// ("attn.q", "blocks.0.attn.q"), or the single entry <see cref="AllLinear"/>. A path is targeted when it equals a
    /// name or ends with "." + name, as in PEFT.
    /// </summary>
    public IReadOnlyList<string> TargetModules { get; init; } = [];

    /// <summary>
    /// Rank overrides: the first key (in enumeration order) that matches a module path as the regular expression
    /// <c>^(.*\.)?(key)$</c> gives that module's rank (PEFT's <c>rank_pattern</c>).
    /// </summary>
    public IReadOnlyDictionary<string, int> RankPattern { get; init; } = new Dictionary<string, int>();

    /// <summary>α overrides, matched as <see cref="RankPattern"/> (PEFT's <c>alpha_pattern</c>).</summary>
    public IReadOnlyDictionary<string, float> AlphaPattern { get; init; } = new Dictionary<string, float>();

    /// <summary>The options for the module at <paramref name="path"/>: the defaults with the matching overrides.</summary>
    public LoraOptions OptionsFor(string path)
    {
        var options = Defaults;
        if (Match(RankPattern, path, nameof(RankPattern)) is { } rankKey) options = options with { Rank = RankPattern[rankKey] };
        if (Match(AlphaPattern, path, nameof(AlphaPattern)) is { } alphaKey) options = options with { Alpha = AlphaPattern[alphaKey] };
        return options;
    }

    /// <summary>True when <paramref name="target"/> is selected by <see cref="TargetModules"/> (see there).</summary>
    public bool Targets(LinearTarget target) =>
        TargetModules is [AllLinear] ? target.InAllLinear : TargetModules.Any(name => Selects(name, target.Path));

    /// <summary>A path equals the name or ends with "." + name.</summary>
    internal static bool Selects(string name, string path) =>
        path == name || (path.Length > name.Length && path.EndsWith(name, StringComparison.Ordinal) && path[^(name.Length + 1)] == '.');

    private static string? Match<T>(IReadOnlyDictionary<string, T> pattern, string path, string argument)
    {
        foreach (var key in pattern.Keys)
        {
            try
            {
                if (Regex.IsMatch(path, $"^(.*\\.)?({key})$", RegexOptions.CultureInvariant)) return key;
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"{argument}: '{key}' is not a valid regular expression ({e.Message})", argument, e);
            }
        }
        return null;
    }
}

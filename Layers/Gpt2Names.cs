namespace LoraRuntime.Layers;

/// <summary>
/// Hugging Face GPT-2's module names for ours: "blocks.N" is "h.N", ln1/ln2 are ln_1/ln_2, and the projections
/// attn.qkv, attn.o, mlp.fc, mlp.proj are the Conv1D modules attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj, whose
/// weights are stored [in, out] (ours are [out, in]). wte, wpe and ln_f keep their names.
/// </summary>
internal static class Gpt2Names
{
    private static readonly (string Ours, string Theirs)[] BlockModules =
    [
        ("ln1", "ln_1"), ("ln2", "ln_2"), ("attn.qkv", "attn.c_attn"), ("attn.o", "attn.c_proj"), ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj"),
    ];

    /// <summary>
    /// GPT-2's path (without the "transformer." prefix) of our module or parameter <paramref name="path"/>
    /// ("blocks.0.attn.qkv.weight" → "h.0.attn.c_attn.weight"), or null where GPT-2 has no such module (the q, k, v
    /// slices of the fused projection).
    /// </summary>
    public static string? ToGpt2(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!path.StartsWith("blocks.", StringComparison.Ordinal)) return path;
        int dot = path.IndexOf('.', "blocks.".Length);
        if (dot < 0) return "h." + path["blocks.".Length..];
        string block = path["blocks.".Length..dot], rest = path[(dot + 1)..];
        foreach (var (ours, theirs) in BlockModules)
            if (rest == ours || rest.StartsWith(ours + ".", StringComparison.Ordinal))
                return $"h.{block}.{theirs}{rest[ours.Length..]}";
        return null;
    }

    /// <summary>True when our parameter <paramref name="name"/> is the weight of a Conv1D module in GPT-2 (stored transposed).</summary>
    public static bool IsConv1DWeight(string name) =>
        name.EndsWith(".weight", StringComparison.Ordinal) && name.StartsWith("blocks.", StringComparison.Ordinal)
        && (name.EndsWith(".attn.qkv.weight", StringComparison.Ordinal) || name.EndsWith(".attn.o.weight", StringComparison.Ordinal)
            || name.EndsWith(".mlp.fc.weight", StringComparison.Ordinal) || name.EndsWith(".mlp.proj.weight", StringComparison.Ordinal));
}

using System.Globalization;
using System.Text.Json;

namespace LoraRuntime.Layers.Adapters;

/// <summary>
/// Every field of PEFT's <c>adapter_config.json</c> for a LoRA adapter, with PEFT's names, defaults and meaning.
/// Fields this type does not know are kept (as raw JSON) and written back on a rewrite. What this runtime cannot
/// honour is refused by <see cref="Parse"/>, naming the field: a peft_type other than LORA, bias ≠ "none",
/// modules_to_save, layers_to_transform/layers_pattern, lora_bias, and the other variants listed in
/// <see cref="MustStayDefault"/>.
/// </summary>
internal sealed record PeftAdapterConfig
{
    /// <summary>Fields PEFT knows that change the adapter's meaning and that are only accepted at their default (null, false or empty).</summary>
    public static readonly IReadOnlyList<string> MustStayDefault =
    [
        "layers_to_transform", "layers_pattern", "lora_bias", "use_qalora", "layer_replication", "target_parameters",
        "trainable_token_indices", "alora_invocation_tokens", "megatron_config", "use_alora",
    ];

    private static readonly string[] Known =
    [
        "peft_type", "task_type", "base_model_name_or_path", "r", "lora_alpha", "lora_dropout", "target_modules", "exclude_modules",
        "use_rslora", "use_dora", "fan_in_fan_out", "bias", "modules_to_save", "init_lora_weights", "rank_pattern", "alpha_pattern",
    ];

    /// <summary>peft_type: only "LORA".</summary>
    public string PeftType { get; init; } = "LORA";

    /// <summary>task_type ("CAUSAL_LM"), or null.</summary>
    public string? TaskType { get; init; } = "CAUSAL_LM";

    /// <summary>base_model_name_or_path, or null.</summary>
    public string? BaseModelNameOrPath { get; init; }

    /// <summary>r, the default rank.</summary>
    public int Rank { get; init; } = 8;

    /// <summary>lora_alpha.</summary>
    public float Alpha { get; init; } = 8;

    /// <summary>lora_dropout.</summary>
    public float Dropout { get; init; }

    /// <summary>target_modules as a list of names (a module is targeted when its name equals one or ends with "." + one), or null.</summary>
    public IReadOnlyList<string>? TargetModules { get; init; }

    /// <summary>target_modules as one string: a regular expression that must match a whole module name ("all-linear" is a keyword, not a pattern).</summary>
    public string? TargetModulesPattern { get; init; }

    /// <summary>exclude_modules as a list of names (matched as <see cref="TargetModules"/>), or null.</summary>
    public IReadOnlyList<string>? ExcludeModules { get; init; }

    /// <summary>exclude_modules as one regular expression over whole module names, or null.</summary>
    public string? ExcludeModulesPattern { get; init; }

    /// <summary>use_rslora: s = α/√R.</summary>
    public bool UseRsLora { get; init; }

    /// <summary>use_dora.</summary>
    public bool UseDora { get; init; }

    /// <summary>
    /// fan_in_fan_out: the base layer stores its weight [in, out] (GPT-2's Conv1D). It concerns the base weight only:
    /// lora_A stays [R, in] and lora_B [out, R] either way.
    /// </summary>
    public bool FanInFanOut { get; init; }

    /// <summary>bias: only "none".</summary>
    public string Bias { get; init; } = "none";

    /// <summary>modules_to_save: only null or empty.</summary>
    public IReadOnlyList<string>? ModulesToSave { get; init; }

    /// <summary>init_lora_weights as PEFT writes it: "true" or "false" (JSON booleans), or a method name ("gaussian", "pissa", "pissa_niter_4", "olora", …).</summary>
    public string InitLoraWeights { get; init; } = "true";

    /// <summary>rank_pattern: per-module ranks by pattern.</summary>
    public IReadOnlyDictionary<string, int> RankPattern { get; init; } = new Dictionary<string, int>();

    /// <summary>alpha_pattern: per-module α by pattern.</summary>
    public IReadOnlyDictionary<string, float> AlphaPattern { get; init; } = new Dictionary<string, float>();

    /// <summary>Every other field, name → raw JSON, in file order; written back unchanged.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> OtherFields { get; init; } = [];

    /// <summary>The adapter options of <see cref="InitLoraWeights"/> and the scalar fields.</summary>
    public LoraOptions Defaults => new()
    {
        Rank = Rank, Alpha = Alpha, Dropout = Dropout, UseRsLora = UseRsLora, UseDora = UseDora,
        Init = ParseInit(InitLoraWeights, out int iterations), PissaIterations = iterations,
    };

    /// <summary>Reads a configuration; <paramref name="path"/> names the file in errors.</summary>
    public static PeftAdapterConfig Parse(JsonElement root, string path)
    {
        if (root.ValueKind != JsonValueKind.Object) throw Invalid(path, "(root)", "a JSON object", root.ValueKind.ToString());
        string peftType = OptionalString(root, "peft_type", path) ?? throw Invalid(path, "peft_type", "\"LORA\"", "nothing (the field is missing)");
        if (peftType != "LORA") throw Invalid(path, "peft_type", "\"LORA\" (other PEFT methods are not supported)", $"\"{peftType}\"");
        string bias = OptionalString(root, "bias", path) ?? "none";
        if (bias != "none") throw Invalid(path, "bias", "\"none\" (trained biases are not supported)", $"\"{bias}\"");
        var modulesToSave = OptionalList(root, "modules_to_save", path, out _);
        if (modulesToSave is { Count: > 0 })
            throw Invalid(path, "modules_to_save", "null or [] (fully trained extra modules are not supported)", $"[{string.Join(", ", modulesToSave)}]");
        foreach (string name in MustStayDefault)
            if (root.TryGetProperty(name, out var v) && !IsDefault(v))
                throw Invalid(path, name, "null, false or empty (not supported)", v.GetRawText());
        var targets = OptionalList(root, "target_modules", path, out string? targetPattern);
        if (targets is null && targetPattern is null) throw Invalid(path, "target_modules", "a list of module names or a regular expression", "nothing");
        var excludes = OptionalList(root, "exclude_modules", path, out string? excludePattern);
        string init = "true";
        if (root.TryGetProperty("init_lora_weights", out var initValue))
        {
            init = initValue.ValueKind switch
            {
                JsonValueKind.True => "true",
                JsonValueKind.False => "false",
                JsonValueKind.String => initValue.GetString()!,
                _ => throw Invalid(path, "init_lora_weights", "true, false or a method name", initValue.GetRawText()),
            };
            try
            {
                ParseInit(init, out _);
            }
            catch (NotSupportedException e)
            {
                throw new InvalidDataException($"{path}: init_lora_weights: {e.Message}", e);
            }
        }
        var others = new List<KeyValuePair<string, string>>();
        foreach (var p in root.EnumerateObject())
            if (Array.IndexOf(Known, p.Name) < 0) others.Add(new(p.Name, p.Value.GetRawText()));
        return new PeftAdapterConfig
        {
            PeftType = peftType,
            TaskType = OptionalString(root, "task_type", path),
            BaseModelNameOrPath = OptionalString(root, "base_model_name_or_path", path),
            Rank = root.TryGetProperty("r", out var r) && r.ValueKind == JsonValueKind.Number && r.TryGetInt32(out int rank)
                ? rank : throw Invalid(path, "r", "an integer rank", root.TryGetProperty("r", out var rr) ? rr.GetRawText() : "nothing"),
            Alpha = (float)Number(root, "lora_alpha", path, 8),
            Dropout = (float)Number(root, "lora_dropout", path, 0),
            TargetModules = targets,
            TargetModulesPattern = targetPattern,
            ExcludeModules = excludes,
            ExcludeModulesPattern = excludePattern,
            UseRsLora = Flag(root, "use_rslora", path),
            UseDora = Flag(root, "use_dora", path),
            FanInFanOut = Flag(root, "fan_in_fan_out", path),
            Bias = bias,
            ModulesToSave = modulesToSave,
            InitLoraWeights = init,
            RankPattern = Pattern(root, "rank_pattern", path, e => e.TryGetInt32(out int v) ? v : throw new FormatException("expected an integer")),
            AlphaPattern = Pattern(root, "alpha_pattern", path, e => (float)e.GetDouble()),
            OtherFields = others,
        };
    }

    /// <summary>Writes every field (the known ones first, then <see cref="OtherFields"/>).</summary>
    public void Write(Utf8JsonWriter json)
    {
        ArgumentNullException.ThrowIfNull(json);
        json.WriteStartObject();
        json.WriteString("peft_type", PeftType);
        WriteStringOrNull(json, "task_type", TaskType);
        WriteStringOrNull(json, "base_model_name_or_path", BaseModelNameOrPath);
        json.WriteNumber("r", Rank);
        json.WriteNumber("lora_alpha", Alpha);
        json.WriteNumber("lora_dropout", Dropout);
        WriteListOrPattern(json, "target_modules", TargetModules, TargetModulesPattern);
        WriteListOrPattern(json, "exclude_modules", ExcludeModules, ExcludeModulesPattern);
        json.WriteBoolean("use_rslora", UseRsLora);
        json.WriteBoolean("use_dora", UseDora);
        json.WriteBoolean("fan_in_fan_out", FanInFanOut);
        json.WriteString("bias", Bias);
        WriteListOrPattern(json, "modules_to_save", ModulesToSave, null);
        if (InitLoraWeights is "true" or "false") json.WriteBoolean("init_lora_weights", InitLoraWeights == "true");
        else json.WriteString("init_lora_weights", InitLoraWeights);
        json.WriteStartObject("rank_pattern");
        foreach (var kv in RankPattern) json.WriteNumber(kv.Key, kv.Value);
        json.WriteEndObject();
        json.WriteStartObject("alpha_pattern");
        foreach (var kv in AlphaPattern) json.WriteNumber(kv.Key, kv.Value);
        json.WriteEndObject();
        foreach (var (name, raw) in OtherFields)
        {
            json.WritePropertyName(name);
            json.WriteRawValue(raw, skipInputValidation: false);
        }
        json.WriteEndObject();
    }

    /// <summary>PEFT's init_lora_weights for <paramref name="options"/>.</summary>
    public static string InitName(LoraOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options.Init switch
        {
            LoraInit.Gaussian => "gaussian",
            LoraInit.Random => "false",
            LoraInit.Pissa => "pissa",
            LoraInit.PissaRandomized => $"pissa_niter_{options.PissaIterations}",
            LoraInit.Olora => "olora",
            _ => "true",
        };
    }

    /// <summary>The <see cref="LoraInit"/> of an init_lora_weights value; methods this runtime lacks are a <see cref="NotSupportedException"/>.</summary>
    public static LoraInit ParseInit(string value, out int pissaIterations)
    {
        ArgumentNullException.ThrowIfNull(value);
        pissaIterations = 4;
        switch (value.ToLowerInvariant())
        {
            case "true": return LoraInit.Default;
            case "false": return LoraInit.Random;
            case "gaussian": return LoraInit.Gaussian;
            case "pissa": return LoraInit.Pissa;
            case "olora": return LoraInit.Olora;
        }
        const string niter = "pissa_niter_";
        if (value.StartsWith(niter, StringComparison.Ordinal)
            && int.TryParse(value.AsSpan(niter.Length), NumberStyles.None, CultureInfo.InvariantCulture, out pissaIterations) && pissaIterations >= 0)
            return LoraInit.PissaRandomized;
        throw new NotSupportedException(
            $"expected true, false, gaussian, pissa, pissa_niter_K or olora; got '{value}' (loftq, eva, corda and orthogonal are not supported)");
    }

    private static bool IsDefault(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Null or JsonValueKind.False => true,
        JsonValueKind.Array => v.GetArrayLength() == 0,
        JsonValueKind.Object => !v.EnumerateObject().Any(),
        _ => false,
    };

    private static string? OptionalString(JsonElement root, string name, string path)
    {
        if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw Invalid(path, name, "a string", v.GetRawText());
    }

    private static double Number(JsonElement root, string name, string path, double fallback)
    {
        if (!root.TryGetProperty(name, out var v)) return fallback;
        return v.ValueKind == JsonValueKind.Number ? v.GetDouble() : throw Invalid(path, name, "a number", v.GetRawText());
    }

    private static bool Flag(JsonElement root, string name, string path)
    {
        if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return false;
        return v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : throw Invalid(path, name, "true or false", v.GetRawText());
    }

    private static List<string>? OptionalList(JsonElement root, string name, string path, out string? pattern)
    {
        pattern = null;
        if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.String)
        {
            // PEFT's "all-linear" is a keyword, kept as a one-name list; any other string is a regular expression.
            string s = v.GetString()!;
            if (s.Equals(LoraConfig.AllLinear, StringComparison.OrdinalIgnoreCase)) return [LoraConfig.AllLinear];
            pattern = s;
            return null;
        }
        if (v.ValueKind != JsonValueKind.Array) throw Invalid(path, name, "a list of names or a string", v.GetRawText());
        var list = new List<string>();
        foreach (var e in v.EnumerateArray())
            list.Add(e.ValueKind == JsonValueKind.String ? e.GetString()! : throw Invalid(path, name, "strings only", e.GetRawText()));
        return list;
    }

    private static Dictionary<string, T> Pattern<T>(JsonElement root, string name, string path, Func<JsonElement, T> read)
    {
        var result = new Dictionary<string, T>(StringComparer.Ordinal);
        if (!root.TryGetProperty(name, out var p) || p.ValueKind == JsonValueKind.Null) return result;
        if (p.ValueKind != JsonValueKind.Object) throw Invalid(path, name, "an object of pattern → value", p.GetRawText());
        foreach (var kv in p.EnumerateObject())
        {
            try
            {
                if (kv.Value.ValueKind != JsonValueKind.Number) throw new FormatException("expected a number");
                result[kv.Name] = read(kv.Value);
            }
            catch (FormatException e)
            {
                throw Invalid(path, $"{name}.{kv.Name}", e.Message, kv.Value.GetRawText());
            }
        }
        return result;
    }

    private static void WriteStringOrNull(Utf8JsonWriter json, string name, string? value)
    {
        if (value is null) json.WriteNull(name);
        else json.WriteString(name, value);
    }

    private static void WriteListOrPattern(Utf8JsonWriter json, string name, IReadOnlyList<string>? list, string? pattern)
    {
        if (pattern is not null) json.WriteString(name, pattern);
        else if (list is [LoraConfig.AllLinear]) json.WriteString(name, LoraConfig.AllLinear);
        else if (list is null) json.WriteNull(name);
        else
        {
            json.WriteStartArray(name);
            foreach (string s in list) json.WriteStringValue(s);
            json.WriteEndArray();
        }
    }

    private static InvalidDataException Invalid(string path, string field, string expected, string got) =>
        new($"{path}: {field}: expected {expected}; got {got}");
}

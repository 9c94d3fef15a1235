using System.Text.Json;

namespace LoraRuntime.Layers;

/// <summary>
/// Typed reads of a Hugging Face <c>config.json</c>'s fields, each error naming the file, the field, what was expected
/// and what was found: what the GPT-2 and Llama-family readers share.
/// </summary>
internal static class ConfigFields
{
    /// <summary>An integer field that must be present.</summary>
    public static int Int(JsonElement root, string name, string path) =>
        OptionalInt(root, name, path) ?? throw Invalid(path, name, "an integer", "nothing (the field is missing)");

    /// <summary>An integer field, or null when missing or null.</summary>
    public static int? OptionalInt(JsonElement root, string name, string path)
    {
        if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out int result)) throw Invalid(path, name, "an integer", value.GetRawText());
        return result;
    }

    /// <summary>A number field, or null when missing or null.</summary>
    public static double? OptionalDouble(JsonElement root, string name, string path)
    {
        if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.Number) throw Invalid(path, name, "a number", value.GetRawText());
        return value.GetDouble();
    }

    /// <summary>A boolean field, or <paramref name="fallback"/> when missing or null.</summary>
    public static bool Bool(JsonElement root, string name, bool fallback, string path)
    {
        if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return fallback;
        if (value.ValueKind is not (JsonValueKind.True or JsonValueKind.False)) throw Invalid(path, name, "true or false", value.GetRawText());
        return value.GetBoolean();
    }

    /// <summary>"{path}: {field}: expected {expected}; got {got}".</summary>
    public static InvalidDataException Invalid(string path, string field, string expected, string got) =>
        new($"{path}: {field}: expected {expected}; got {got}");
}

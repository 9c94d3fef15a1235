using System.Reflection;

namespace LoraRuntime.Cuda;

/// <summary>
/// The CUDA C sources of native/ embedded in this assembly: one <c>*.cu</c> file per op family, and the shared header
/// <c>common.cuh</c> that NVRTC is given under that include name.
/// </summary>
public static class KernelSources
{
    private const string Prefix = "native/";

    /// <summary>The include name of the shared header.</summary>
    public const string HeaderName = "common.cuh";

    private static readonly Lazy<IReadOnlyDictionary<string, string>> s_all = new(Load);

    /// <summary>Every embedded file by name ("gelu.cu", "common.cuh").</summary>
    public static IReadOnlyDictionary<string, string> All => s_all.Value;

    /// <summary>The names of the kernel files (<c>*.cu</c>), sorted.</summary>
    public static IReadOnlyList<string> KernelFiles => All.Keys.Where(k => k.EndsWith(".cu", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToArray();

    /// <summary>The text of <paramref name="file"/>; throws <see cref="ArgumentException"/> naming the embedded files when absent.</summary>
    public static string Get(string file) => All.TryGetValue(file, out var text) ? text
        : throw new ArgumentException($"file: no embedded kernel source '{file}'; have {string.Join(", ", All.Keys.Order(StringComparer.Ordinal))}", nameof(file));

    private static IReadOnlyDictionary<string, string> Load()
    {
        var assembly = typeof(KernelSources).Assembly;
        var sources = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string resource in assembly.GetManifestResourceNames())
        {
            if (!resource.StartsWith(Prefix, StringComparison.Ordinal)) continue;
            using var stream = assembly.GetManifestResourceStream(resource)!;
            using var reader = new StreamReader(stream);
            sources[resource[Prefix.Length..]] = reader.ReadToEnd();
        }
        return sources;
    }
}

namespace LoraRuntime.Cli.Serve;

/// <summary>
/// The one folder that adapters loaded over HTTP may come from. A requested path (relative to the root, or absolute) is
/// normalised (<c>..</c> applied as written), then every symbolic link in it is replaced by its target, component by
/// component, and the adapter is loaded from the result — a path whose every existing component is a real folder, so
/// what is checked is what is read. The adapter's own files are resolved too: a link inside the root to a file outside
/// it is refused like a path outside it.
/// </summary>
internal sealed class AdapterRoot
{
    /// <summary>The one answer to any path outside the root: it says nothing of whether the path exists.</summary>
    public const string Outside = "path: not an adapter directory inside the server's adapter root";

    private const int MaxLinks = 40; // as Linux's limit on links followed in one lookup

    private static readonly string[] AdapterFiles = ["adapter_config.json", "adapter_model.safetensors"];

    /// <summary>The root <paramref name="directory"/> (it must exist), links resolved.</summary>
    public AdapterRoot(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        if (!System.IO.Directory.Exists(directory))
            throw new ArgumentException($"--adapter-root: expected an existing directory; got '{directory}'", nameof(directory));
        int links = 0;
        Directory = Resolve(directory, ref links);
    }

    /// <summary>The root, fully resolved.</summary>
    public string Directory { get; }

    /// <summary>
    /// The resolved directory of <paramref name="requested"/> when it and the adapter files in it lie inside the root;
    /// null otherwise (outside, through a link that leaves it, a link loop, or a path that cannot be a path).
    /// </summary>
    public string? TryResolve(string requested)
    {
        if (string.IsNullOrEmpty(requested) || requested.Contains('\0')) return null;
        try
        {
            int links = 0;
            string path = Resolve(Path.Combine(Directory, requested), ref links);
            if (!Inside(path)) return null;
            foreach (string file in AdapterFiles)
            {
                links = 0;
                if (!Inside(Resolve(Path.Combine(path, file), ref links))) return null;
            }
            return path;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            return null;
        }
    }

    private bool Inside(string path) =>
        path == Directory || path.StartsWith(Directory.EndsWith(Path.DirectorySeparatorChar) ? Directory : Directory + Path.DirectorySeparatorChar, StringComparison.Ordinal);

    /// <summary>
    /// <paramref name="path"/>, normalised, with every symbolic link replaced by its target, component by component;
    /// past the first component that does not exist the rest is kept as written.
    /// </summary>
    private static string Resolve(string path, ref int links)
    {
        string full = Path.GetFullPath(path);
        string root = Path.GetPathRoot(full)!;
        string current = root;
        var parts = full[root.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries);
        for (int i = 0; i < parts.Length; i++)
        {
            string next = Path.Combine(current, parts[i]);
            FileSystemInfo info = System.IO.Directory.Exists(next) ? new DirectoryInfo(next) : new FileInfo(next);
            if (info.LinkTarget is { } target)
            {
                if (++links > MaxLinks) throw new IOException($"{path}: too many levels of symbolic links");
                // The target is read relative to the link's folder; the rest of the path then continues from it.
                string rest = string.Join(Path.DirectorySeparatorChar, parts[(i + 1)..]);
                string resolved = Path.Combine(Path.IsPathRooted(target) ? target : Path.Combine(current, target), rest);
                return Resolve(resolved, ref links);
            }
            if (!info.Exists) return Path.GetFullPath(Path.Combine(next, string.Join(Path.DirectorySeparatorChar, parts[(i + 1)..])));
            current = next;
        }
        return current;
    }
}

namespace LoraRuntime.Interop;

/// <summary>One folder the resolver looks in, and where it came from ("LORA_CUDA_LIB_DIR", "Python wheel", …).</summary>
/// <param name="Path">The folder.</param>
/// <param name="Source">Why it is searched.</param>
public readonly record struct SearchDirectory(string Path, string Source);

/// <summary>
/// The folders the resolver searches, in order, before it asks the system loader for the bare file names,
/// and notes on the sources that gave no folder (an unset variable, no Python wheels).
/// </summary>
/// <param name="Directories">Existing folders, most specific first.</param>
/// <param name="Notes">One line per source that contributed nothing, for <c>lora info</c>.</param>
public sealed record LibrarySearchPlan(IReadOnlyList<SearchDirectory> Directories, IReadOnlyList<string> Notes)
{
    /// <summary>The override variable: a folder searched before any other.</summary>
    public const string OverrideVariable = "LORA_CUDA_LIB_DIR";

    /// <summary>
    /// The plan for the current environment: <c>LORA_CUDA_LIB_DIR</c>; the <c>nvidia/cu13/lib</c> and
    /// <c>nvidia/*/lib</c> folders of Python wheels, in the order Python searches its package folders (virtual
    /// environment, conda, user site, /usr/local, /usr, /opt/conda); <c>CUDA_PATH</c> and <c>CUDA_HOME</c>'s
    /// lib64; <c>/usr/local/cuda/lib64</c>. Never throws: missing or unreadable folders are skipped.
    /// </summary>
    public static LibrarySearchPlan FromEnvironment() =>
        FromEnvironment(Environment.GetEnvironmentVariable, Environment.GetFolderPath(Environment.SpecialFolder.UserProfile));

    /// <summary>The plan for the variables <paramref name="variable"/> reads and the home folder <paramref name="home"/>.</summary>
    internal static LibrarySearchPlan FromEnvironment(Func<string, string?> variable, string? home)
    {
        var directories = new List<SearchDirectory>();
        var notes = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);

        void AddFolder(string path, string source)
        {
            if (Directory.Exists(path) && seen.Add(Path.GetFullPath(path))) directories.Add(new SearchDirectory(path, source));
        }

        string? overrideDir = variable(OverrideVariable);
        if (string.IsNullOrWhiteSpace(overrideDir)) notes.Add($"${OverrideVariable}: not set");
        else if (!Directory.Exists(overrideDir)) notes.Add($"${OverrideVariable}={overrideDir}: no such folder");
        else AddFolder(overrideDir, OverrideVariable);

        int before = directories.Count;
        foreach (string packages in PythonPackageFolders(variable, home))
            foreach (string lib in WheelLibraryFolders(packages))
                AddFolder(lib, "Python wheel");
        if (directories.Count == before) notes.Add("Python wheels: no nvidia/*/lib folder found");

        bool anyToolkitVariable = false;
        foreach (string name in (ReadOnlySpan<string>)["CUDA_PATH", "CUDA_HOME"])
        {
            string? root = variable(name);
            if (string.IsNullOrWhiteSpace(root)) continue;
            anyToolkitVariable = true;
            string lib64 = Path.Combine(root, "lib64");
            if (Directory.Exists(lib64)) AddFolder(lib64, name);
            else notes.Add($"${name}={root}: no lib64 folder");
        }
        if (!anyToolkitVariable) notes.Add("$CUDA_PATH, $CUDA_HOME: not set");

        const string DefaultToolkit = "/usr/local/cuda/lib64";
        if (Directory.Exists(DefaultToolkit)) AddFolder(DefaultToolkit, "default toolkit");
        else notes.Add($"{DefaultToolkit}: no such folder");

        return new LibrarySearchPlan(directories, notes);
    }

    /// <summary>site-packages / dist-packages folders, in Python's own order of precedence.</summary>
    private static IEnumerable<string> PythonPackageFolders(Func<string, string?> variable, string? home)
    {
        foreach (string name in (string[])["VIRTUAL_ENV", "CONDA_PREFIX"])
        {
            string? prefix = variable(name);
            if (!string.IsNullOrWhiteSpace(prefix))
                foreach (string python in PythonFolders(Path.Combine(prefix, "lib")))
                    yield return Path.Combine(python, "site-packages");
        }
        if (!string.IsNullOrEmpty(home))
            foreach (string python in PythonFolders(Path.Combine(home, ".local", "lib")))
                yield return Path.Combine(python, "site-packages");
        foreach (string prefix in (string[])["/usr/local/lib", "/usr/lib", "/opt/conda/lib"])
            foreach (string python in PythonFolders(prefix))
            {
                yield return Path.Combine(python, "dist-packages");
                yield return Path.Combine(python, "site-packages");
            }
    }

    /// <summary>The python3* folders under <paramref name="parent"/>, newest version first.</summary>
    private static List<string> PythonFolders(string parent)
    {
        var folders = new List<string>();
        try
        {
            if (Directory.Exists(parent)) folders.AddRange(Directory.EnumerateDirectories(parent, "python3*"));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // An unreadable folder holds nothing we can load.
        }
        folders.Sort((a, b) => PythonMinor(b).CompareTo(PythonMinor(a)));
        return folders;
    }

    /// <summary>12 for "python3.12"; -1 for "python3" or anything unparsable.</summary>
    private static int PythonMinor(string folder)
    {
        string name = Path.GetFileName(folder);
        int dot = name.IndexOf('.');
        return dot >= 0 && int.TryParse(name.AsSpan(dot + 1), out int minor) ? minor : -1;
    }

    /// <summary>nvidia/cu13/lib first (CUDA 13 wheels), then every other nvidia/*/lib (CUDA 12 wheels) by name.</summary>
    private static IEnumerable<string> WheelLibraryFolders(string packages)
    {
        string nvidia = Path.Combine(packages, "nvidia");
        if (!Directory.Exists(nvidia)) yield break;
        string cu13 = Path.Combine(nvidia, "cu13", "lib");
        if (Directory.Exists(cu13)) yield return cu13;
        var others = new List<string>();
        try
        {
            others.AddRange(Directory.EnumerateDirectories(nvidia));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            yield break;
        }
        others.Sort(StringComparer.Ordinal);
        foreach (string package in others)
        {
            if (Path.GetFileName(package) == "cu13") continue;
            string lib = Path.Combine(package, "lib");
            if (Directory.Exists(lib)) yield return lib;
        }
    }
}

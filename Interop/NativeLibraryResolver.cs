using System.Reflection;
using System.Runtime.InteropServices;

namespace LoraRuntime.Interop;

/// <summary>
/// Finds the CUDA libraries: each candidate file name (CUDA 13 before 12) in each folder of the
/// <see cref="LibrarySearchPlan"/>, then the bare file names through the system loader. Every place tried is
/// recorded with the loader's reason, and nothing here throws: a missing library is a result, not an error.
/// Results are cached for the process (a loaded library is never unloaded). Registered as the
/// <c>DllImport</c> resolver of this assembly, so <c>[LibraryImport("cuda")]</c> and the others load through it.
/// </summary>
public static class NativeLibraryResolver
{
    private static readonly object s_lock = new();
    private static readonly Dictionary<string, LibraryLoadResult> s_results = new(StringComparer.Ordinal);
    private static int s_registered;

    /// <summary>
    /// Loads <paramref name="library"/> (a <see cref="CudaLibraryNames"/> name) and, first, its dependencies;
    /// returns the cached result on later calls.
    /// </summary>
    public static LibraryLoadResult Load(string library)
    {
        ArgumentNullException.ThrowIfNull(library);
        lock (s_lock) // re-entrant: dependencies are loaded under the same lock
        {
            if (s_results.TryGetValue(library, out var cached)) return cached;
            foreach (string dependency in CudaLibraryNames.Dependencies(library)) Load(dependency);
            var result = Search(library, CudaLibraryNames.FileNames(library), LibrarySearchPlan.FromEnvironment());
            if (result.IsLoaded) LoadCompanions(library, result.LoadedFrom!);
            s_results[library] = result;
            return result;
        }
    }

    /// <summary>
    /// Loads the libraries <paramref name="library"/> opens by itself at run time (NVRTC's builtins) from the folder it
    /// loaded from, so that they are the same release even where that folder is not on the loader's path.
    /// </summary>
    private static void LoadCompanions(string library, string loadedFrom)
    {
        string? prefix = CudaLibraryNames.CompanionPrefix(library);
        string? folder = Path.GetDirectoryName(loadedFrom);
        if (prefix is null || string.IsNullOrEmpty(folder)) return; // a bare file name: the system loader finds the rest
        try
        {
            foreach (string path in Directory.EnumerateFiles(folder, prefix + "*"))
                NativeLibrary.TryLoad(path, out _);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Unreadable: the library will look on its own.
        }
    }

    /// <summary>
    /// Makes this resolver the one the runtime asks for the <c>DllImport</c>s of the Interop assembly. Called by
    /// the static constructor of each binding class; idempotent. If the host already set a resolver for this
    /// assembly, that one stays.
    /// </summary>
    public static void Register()
    {
        if (Interlocked.Exchange(ref s_registered, 1) != 0) return;
        try
        {
            NativeLibrary.SetDllImportResolver(typeof(NativeLibraryResolver).Assembly, Resolve);
        }
        catch (InvalidOperationException)
        {
            // A resolver is already set for this assembly; keep it.
        }
    }

    private static nint Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath) =>
        libraryName == MpiLibrary.Name ? MpiLibrary.Load().Handle
        : CudaLibraryNames.FileNames(libraryName).Count == 0 ? 0 : Load(libraryName).Handle; // 0: default probing

    /// <summary>Looks for <paramref name="fileNames"/> in <paramref name="plan"/>'s folders, then via the system loader.</summary>
    internal static LibraryLoadResult Search(string library, IReadOnlyList<string> fileNames, LibrarySearchPlan plan)
    {
        var tried = new List<string>(plan.Notes);
        if (fileNames.Count == 0)
        {
            tried.Add($"{library}: not a library this resolver knows");
            return new LibraryLoadResult(library, 0, null, tried);
        }
        foreach (var directory in plan.Directories)
        {
            bool present = false;
            foreach (string fileName in fileNames)
            {
                string path = Path.Combine(directory.Path, fileName);
                if (!File.Exists(path)) continue;
                present = true;
                if (TryLoad(path, out nint handle, out string reason)) return new LibraryLoadResult(library, handle, path, tried);
                tried.Add($"{path} ({directory.Source}): {reason}");
            }
            if (!present) tried.Add($"{directory.Path} ({directory.Source}): no {string.Join(" or ", fileNames)}");
        }
        foreach (string fileName in fileNames)
        {
            if (TryLoad(fileName, out nint handle, out string reason)) return new LibraryLoadResult(library, handle, fileName, tried);
            tried.Add($"{fileName} (system loader): {reason}");
        }
        return new LibraryLoadResult(library, 0, null, tried);
    }

    /// <summary>
    /// <see cref="NativeLibrary.TryLoad(string, out nint)"/>; on failure, loads once more to read the loader's
    /// message (dlerror: "cannot open shared object file", "invalid ELF header", a missing dependency…).
    /// </summary>
    private static bool TryLoad(string pathOrName, out nint handle, out string reason)
    {
        reason = "";
        if (NativeLibrary.TryLoad(pathOrName, out handle)) return true;
        try
        {
            handle = NativeLibrary.Load(pathOrName); // it may have appeared in between
            return true;
        }
        catch (Exception e)
        {
            reason = LoaderReason(e.Message, pathOrName);
            handle = 0;
            return false;
        }
    }

    /// <summary>The loader's own lines from a <see cref="DllNotFoundException"/>, without the runtime's generic advice.</summary>
    internal static string LoaderReason(string message, string pathOrName)
    {
        var lines = message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var reasons = new List<string>();
        for (int i = 1; i < lines.Length; i++) // line 0 is "Unable to load shared library '…' or one of its dependencies…"
        {
            string line = lines[i];
            if (line.StartsWith(pathOrName + ": ", StringComparison.Ordinal)) line = line[(pathOrName.Length + 2)..];
            if (!reasons.Contains(line)) reasons.Add(line);
        }
        return reasons.Count > 0 ? string.Join("; ", reasons) : message.Trim();
    }
}

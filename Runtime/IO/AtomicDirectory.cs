namespace LoraRuntime.IO;

/// <summary>
/// Writes a model or adapter directory as a whole: a new directory is filled under a temporary name beside it and
/// renamed into place only when every file is written, so a failure (a full disk) or a kill leaves either no directory
/// or a complete one, never a model.safetensors without its config.json. Into an existing directory (a training run's,
/// with its checkpoints) the files are filled beside it the same way, then renamed in, the configuration last. Temporary directories of runs that
/// were killed are removed by the next write to the same place.
/// </summary>
public static class AtomicDirectory
{
    /// <summary>
    /// Runs <paramref name="fill"/> on a new folder beside <paramref name="directory"/>, then makes its content
    /// <paramref name="directory"/>'s: by renaming the folder when there was none, else by renaming its entries in (files
    /// whose names end in config.json last). A failure removes the new folder and leaves <paramref name="directory"/> as it was.
    /// </summary>
    public static void Write(string directory, Action<string> fill)
    {
        ArgumentNullException.ThrowIfNull(fill);
        string full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory));
        string parent = Path.GetDirectoryName(full) ?? throw new IOException($"{directory}: not a folder path");
        if (full.EndsWith(".partial", StringComparison.Ordinal) && Directory.Exists(full))
        {
            fill(full); // already one of ours being filled (a save inside a save): no second level
            return;
        }
        Directory.CreateDirectory(parent);
        RemoveAbandoned(parent, Path.GetFileName(full));
        string temp = Path.Combine(parent, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.partial");
        Directory.CreateDirectory(temp);
        try
        {
            fill(temp);
            if (!Directory.Exists(full)) Directory.Move(temp, full);
            else
            {
                // Into an existing folder (a training run's, with its checkpoints): renames only, which take no space,
                // the configuration files last — a reader that finds one finds everything it names.
                var entries = Directory.GetFileSystemEntries(temp).OrderBy(e => e.EndsWith("config.json", StringComparison.Ordinal)).ToList();
                foreach (string entry in entries)
                {
                    string target = Path.Combine(full, Path.GetFileName(entry));
                    if (File.Exists(entry)) File.Move(entry, target, overwrite: true);
                    else
                    {
                        if (Directory.Exists(target)) Directory.Delete(target, recursive: true);
                        Directory.Move(entry, target);
                    }
                }
                Directory.Delete(temp, recursive: true);
            }
        }
        catch
        {
            try
            {
                if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // The failure that brought us here is the one to report.
            }
            throw;
        }
    }

    private static void RemoveAbandoned(string parent, string name)
    {
        try
        {
            foreach (string temp in Directory.EnumerateDirectories(parent, $".{name}.*.partial"))
                if (Temporaries.IsAbandoned(Path.GetFileName(temp), name)) Directory.Delete(temp, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Cleaning up is a courtesy.
        }
    }
}

/// <summary>
/// The temporary files and folders of atomic writes are named ".{name}.{process id}.{guid}.{suffix}": one whose
/// process is gone was abandoned by a killed run and may be removed; one of a running process is being written.
/// </summary>
internal static class Temporaries
{
    public static bool IsAbandoned(string temporary, string name)
    {
        string[] parts = temporary[(name.Length + 2)..].Split('.');
        return parts.Length == 3 && int.TryParse(parts[0], out int pid) && pid != Environment.ProcessId && !IsRunning(pid);
    }

    private static bool IsRunning(int pid)
    {
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            return false;
        }
    }
}

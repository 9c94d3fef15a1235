namespace LoraRuntime.Layers;

/// <summary>
/// Writes a model or adapter directory as a whole: a new directory is filled under a temporary name beside it and
/// renamed into place only when every file is written, so a failure (a full disk) or a kill leaves either no directory
/// or a complete one, never a model.safetensors without its config.json. Into an existing directory (a training run's,
/// with its checkpoints) each file is replaced atomically, the configuration last. Temporary directories of runs that
/// were killed are removed by the next write to the same place.
/// </summary>
internal static class ModelFolder
{
    /// <summary>Runs <paramref name="fill"/> on the folder to write into, then makes it <paramref name="directory"/>.</summary>
    public static void Write(string directory, Action<string> fill)
    {
        ArgumentNullException.ThrowIfNull(fill);
        string full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory));
        string parent = Path.GetDirectoryName(full) ?? throw new IOException($"{directory}: not a folder path");
        Directory.CreateDirectory(parent);
        RemoveAbandoned(parent, Path.GetFileName(full));
        if (Directory.Exists(full))
        {
            fill(full);
            return;
        }
        string temp = Path.Combine(parent, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.partial");
        Directory.CreateDirectory(temp);
        try
        {
            fill(temp);
            Directory.Move(temp, full);
        }
        catch
        {
            try
            {
                Directory.Delete(temp, recursive: true);
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
            {
                string[] parts = Path.GetFileName(temp)[(name.Length + 2)..].Split('.');
                if (parts.Length != 3 || !int.TryParse(parts[0], out int pid) || pid == Environment.ProcessId || IsRunning(pid)) continue;
                Directory.Delete(temp, recursive: true);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Cleaning up is a courtesy.
        }
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

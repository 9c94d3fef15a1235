namespace LoraRuntime.Cli;

/// <summary>Checks an output path given on the command line before any long work is done.</summary>
internal static class OutputPath
{
    /// <summary>
    /// Refuses <paramref name="directory"/> (the value of <paramref name="option"/>) when the file system it would be on
    /// has less free space than <paramref name="bytes"/>, or when its nearest existing folder cannot be written
    /// (probed with a file created and removed at once).
    /// </summary>
    public static void CheckFreeSpace(string directory, long bytes, string option)
    {
        string? at = Path.GetFullPath(directory);
        while (at is not null && !Directory.Exists(at)) at = Path.GetDirectoryName(at);
        if (at is null) return;
        string probe = Path.Combine(at, $".lora-write-probe.{Environment.ProcessId}.{Guid.NewGuid():N}");
        try
        {
            using (File.Create(probe, 1, FileOptions.DeleteOnClose)) { }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"{option}: cannot write in '{at}': {e.Message}");
        }
        long free;
        try
        {
            free = new DriveInfo(at).AvailableFreeSpace;
        }
        catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException)
        {
            return; // a file system that does not say: the write itself will tell
        }
        if (free < bytes)
            throw new UsageException($"{option}: '{directory}' needs about {bytes / (1024.0 * 1024):N1} MiB; its file system has {free / (1024.0 * 1024):N1} MiB free");
    }

    /// <summary>
    /// Checks that <paramref name="path"/> (the value of <paramref name="option"/>) can be written: not a folder, and
    /// its folder exists or can be created. Throws <see cref="UsageException"/>.
    /// </summary>
    public static void CheckWritable(string path, string option)
    {
        string full;
        try
        {
            full = Path.GetFullPath(path);
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new UsageException($"{option}: '{path}' is not a valid file path ({e.Message})");
        }
        if (Directory.Exists(full)) throw new UsageException($"{option}: '{path}' is a folder; expected a file path");
        string? folder = Path.GetDirectoryName(full);
        if (folder is null) throw new UsageException($"{option}: '{path}' is not a file path");
        try
        {
            Directory.CreateDirectory(folder);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"{option}: cannot create the folder of '{path}': {e.Message}");
        }
    }
}

namespace LoraRuntime.Cli;

/// <summary>Writes files so that a reader sees the old content or the new one, never a half-written file.</summary>
internal static class AtomicFile
{
    /// <summary>
    /// Writes <paramref name="bytes"/> to a temporary file in the destination's folder (created if missing),
    /// flushes it to disk, then moves it over <paramref name="path"/>.
    /// </summary>
    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        string full = Path.GetFullPath(path);
        string folder = Path.GetDirectoryName(full) ?? throw new IOException($"{path}: not a file path");
        Directory.CreateDirectory(folder);
        string temp = Path.Combine(folder, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                stream.Write(bytes);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            File.Delete(temp); // no-op when it was never created
            throw;
        }
    }

    /// <summary>
    /// Checks before any long work that <paramref name="path"/> (the value of <paramref name="option"/>) can be
    /// written: not a folder, and its folder exists or can be created. Throws <see cref="UsageException"/>.
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

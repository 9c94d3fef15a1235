namespace LoraRuntime.IO;

/// <summary>
/// Writes files so that a reader sees the old content or the new one, never a half-written file: the content goes
/// to a temporary file in the destination's folder, is flushed to disk, and only then replaces the destination. A
/// failure (or a crash) before the replacement leaves the destination as it was.
/// </summary>
public static class AtomicFile
{
    /// <summary>Writes <paramref name="bytes"/> to <paramref name="path"/> atomically, creating its folder if missing.</summary>
    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes) =>
        Write(path, bytes, static (stream, b) => stream.Write(b));

    /// <summary>
    /// Lets <paramref name="write"/> fill a new file, then moves it over <paramref name="path"/> (its folder is created
    /// if missing). When <paramref name="write"/> throws, the temporary file is removed and the exception rethrown.
    /// </summary>
    public static void Write(string path, Action<Stream> write)
    {
        ArgumentNullException.ThrowIfNull(write);
        Write(path, write, static (stream, w) => w(stream));
    }

    private static void Write<TState>(string path, TState state, Action<Stream, TState> write) where TState : allows ref struct
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = Path.GetFullPath(path);
        string folder = Path.GetDirectoryName(full) ?? throw new IOException($"{path}: not a file path");
        Directory.CreateDirectory(folder);
        RemoveAbandoned(folder, Path.GetFileName(full));
        string temp = Path.Combine(folder, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 16))
            {
                write(stream, state);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            File.Delete(temp); // a no-op when it was never created
            throw;
        }
    }

    /// <summary>Deletes the temporary files of earlier writes of <paramref name="name"/> whose process is gone (a killed run).</summary>
    private static void RemoveAbandoned(string folder, string name)
    {
        try
        {
            foreach (string temp in Directory.EnumerateFiles(folder, $".{name}.*.tmp"))
                if (Temporaries.IsAbandoned(Path.GetFileName(temp), name)) File.Delete(temp);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Cleaning up is a courtesy: a folder that cannot be listed or a file that cannot be removed stays.
        }
    }
}

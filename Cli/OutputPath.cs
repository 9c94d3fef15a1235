namespace LoraRuntime.Cli;

/// <summary>Checks an output path given on the command line before any long work is done.</summary>
internal static class OutputPath
{
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

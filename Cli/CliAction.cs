namespace LoraRuntime.Cli;

/// <summary>
/// Runs a command's body and turns a <see cref="UsageException"/> (a bad command line) or an
/// <see cref="InvalidDataException"/> (an input file that breaks its format) or a missing input file or folder into one line
/// of error and exit code 2.
/// </summary>
internal static class CliAction
{
    /// <summary>Runs <paramref name="body"/>; returns its exit code, or <see cref="ExitCodes.Usage"/> on a bad command line or input file.</summary>
    public static int Run(Terminal terminal, Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is UsageException or InvalidDataException or FileNotFoundException or DirectoryNotFoundException)
        {
            terminal.WriteError(e.Message);
            return ExitCodes.Usage;
        }
    }
}

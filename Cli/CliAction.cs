namespace LoraRuntime.Cli;

/// <summary>Runs a command's body and turns a <see cref="UsageException"/> into a message and exit code 2.</summary>
internal static class CliAction
{
    /// <summary>Runs <paramref name="body"/>; returns its exit code, or <see cref="ExitCodes.Usage"/> on a bad command line.</summary>
    public static int Run(Terminal terminal, Func<int> body)
    {
        try
        {
            return body();
        }
        catch (UsageException e)
        {
            terminal.WriteError(e.Message);
            return ExitCodes.Usage;
        }
    }
}

namespace LoraRuntime.Cli;

/// <summary>The exit codes of <c>lora</c>.</summary>
internal static class ExitCodes
{
    /// <summary>Done.</summary>
    public const int Success = 0;

    /// <summary>The work failed (an I/O error, a failed check).</summary>
    public const int Failure = 1;

    /// <summary>
    /// The command line was wrong: an unknown option, a bad value, an unavailable device, an input file that is
    /// missing or breaks its format.
    /// </summary>
    public const int Usage = 2;
}

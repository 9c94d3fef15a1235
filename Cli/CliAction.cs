using LoraRuntime.Distributed;
using LoraRuntime.Hosting;
using LoraRuntime.Layers.Training;

namespace LoraRuntime.Cli;

/// <summary>
/// Runs a command's body and ends every failure in one line of error, never a stack trace: a bad command line or input
/// (<see cref="UsageException"/>, <see cref="InvalidDataException"/>, a missing file or folder, an argument the
/// libraries refuse, sizes the machine cannot hold) is exit code 2; a failure of the run itself (a diverged training, a full disk, a device error, a
/// bug) is exit code 1. <c>LORA_VERBOSE=1</c> adds the exception's details.
/// </summary>
internal static class CliAction
{
    /// <summary>The environment variable that asks for the details of a failure.</summary>
    public const string VerboseVariable = "LORA_VERBOSE";

    /// <summary>Runs <paramref name="body"/>; returns its exit code, <see cref="ExitCodes.Usage"/> on bad input, <see cref="ExitCodes.Failure"/> on a failed run.</summary>
    public static int Run(Terminal terminal, Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is UsageException or InvalidDataException or FileNotFoundException or DirectoryNotFoundException or ArgumentException)
        {
            terminal.WriteError(OneLine(UserMessage(e)));
            Details(terminal, e);
            return ExitCodes.Usage;
        }
        catch (InsufficientMemoryException e)
        {
            // Refused before the work: the sizes asked for (flags, a config.json) do not fit the machine.
            terminal.WriteError(OneLine("not enough memory: " + e.Message));
            Details(terminal, e);
            return ExitCodes.Usage;
        }
        catch (Exception e)
        {
            terminal.WriteError(OneLine(Describe(e)));
            Details(terminal, e);
            return ExitCodes.Failure;
        }
    }

    /// <summary>A failure of the run in the user's words.</summary>
    private static string Describe(Exception e) => e switch
    {
        TrainingDivergedException => e.Message,
        IOException io when IsDiskFull(io) => $"the disk is full: {io.Message}; free some space and run again (nothing half-written was kept)",
        UnauthorizedAccessException => $"not allowed: {e.Message}",
        IOException => $"a file operation failed: {e.Message}",
        OutOfMemoryException => $"not enough memory: {e.Message}",
        LoraDeviceException => e.Message,
        DistributedException => e.Message,
        OperationCanceledException => "cancelled",
        _ => $"internal error ({e.GetType().Name}): {e.Message}; run again with {VerboseVariable}=1 for the details, and report it",
    };

    // ENOSPC (28) and EDQUOT (122) on Linux; ERROR_DISK_FULL (0x70) and ERROR_HANDLE_DISK_FULL (0x27) on Windows.
    private static bool IsDiskFull(IOException e) => (e.HResult & 0xFFFF) is 28 or 122 or 0x70 or 0x27 || e.Message.Contains("No space left", StringComparison.Ordinal);

    /// <summary>The message without .NET's " (Parameter 'name')" suffix: the message names the option or field itself.</summary>
    private static string UserMessage(Exception e) =>
        e is ArgumentException { ParamName: { } name } ? e.Message.Replace($" (Parameter '{name}')", "", StringComparison.Ordinal) : e.Message;

    private static string OneLine(string message)
    {
        string line = message.ReplaceLineEndings(" ").Trim();
        return line.Length <= 2000 ? line : line[..2000] + "…";
    }

    private static void Details(Terminal terminal, Exception e)
    {
        if (Environment.GetEnvironmentVariable(VerboseVariable) is "1" or "true") terminal.ErrorWriter.WriteLine(e.ToString());
    }
}

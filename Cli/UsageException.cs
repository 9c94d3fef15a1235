namespace LoraRuntime.Cli;

/// <summary>
/// A bad command line: the message names the option, what was expected and what was given. Reported
/// without a stack trace, exit code <see cref="ExitCodes.Usage"/>.
/// </summary>
internal sealed class UsageException(string message) : Exception(message);

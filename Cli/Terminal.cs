using Spectre.Console;

namespace LoraRuntime.Cli;

/// <summary>Where a command writes: rich output and errors, as Spectre consoles and as plain writers.</summary>
internal sealed class Terminal(IAnsiConsole output, IAnsiConsole error, TextWriter outWriter, TextWriter errorWriter, bool errorIsTerminal,
    string errorPrefix = "")
{
    /// <summary>The process's standard output and error.</summary>
    public static Terminal System { get; } = new(
        AnsiConsole.Console,
        AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) }),
        Console.Out,
        Console.Error,
        !Console.IsErrorRedirected);

    /// <summary>Results and reports.</summary>
    public IAnsiConsole Out { get; } = output;

    /// <summary>Errors and progress.</summary>
    public IAnsiConsole Error { get; } = error;

    /// <summary>Standard output for the parser's help text.</summary>
    public TextWriter OutWriter { get; } = outWriter;

    /// <summary>Standard error for the parser's messages.</summary>
    public TextWriter ErrorWriter { get; } = errorWriter;

    /// <summary>A plain (no colour, not interactive) terminal over two writers, for tests.</summary>
    public static Terminal ForWriters(TextWriter output, TextWriter error) =>
        new(Plain(output), Plain(error), output, error, errorIsTerminal: false);

    /// <summary>Prints "error: message" on the error stream: in colour on a terminal, as one plain line otherwise.</summary>
    public void WriteError(string message)
    {
        if (errorIsTerminal) Error.MarkupLine($"[red]error:[/] {Markup.Escape(errorPrefix + message)}");
        else ErrorWriter.WriteLine($"error: {errorPrefix}{message}");
    }

    /// <summary>
    /// This terminal for one rank of a job: errors name the rank ("error: rank 1 of 2 on host: …"); rank 0 keeps the
    /// output and progress, the other ranks print nothing else, so the job reads as one run.
    /// </summary>
    public Terminal ForRank(int rank, string name)
    {
        string prefix = name + ": ";
        if (rank == 0) return new Terminal(Out, Error, OutWriter, ErrorWriter, errorIsTerminal, prefix);
        return new Terminal(Plain(TextWriter.Null), Plain(TextWriter.Null), TextWriter.Null, ErrorWriter, errorIsTerminal: false, prefix);
    }

    private static IAnsiConsole Plain(TextWriter writer) => AnsiConsole.Create(new AnsiConsoleSettings
    {
        Out = new AnsiConsoleOutput(writer),
        Ansi = AnsiSupport.No,
        ColorSystem = ColorSystemSupport.NoColors,
        Interactive = InteractionSupport.No,
    });
}

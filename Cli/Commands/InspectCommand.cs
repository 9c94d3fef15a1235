using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using LoraRuntime.Cli.Inspect;
using LoraRuntime.IO;
using Spectre.Console;

namespace LoraRuntime.Cli.Commands;

/// <summary><c>lora inspect FILE</c>: the tensors, metadata and parameter count of a safetensors file.</summary>
internal static class InspectCommand
{
    private const int MaxValueLength = 200;

    /// <summary>The command.</summary>
    public static Command Create(Terminal terminal)
    {
        var file = new Argument<string>("FILE") { Description = "a .safetensors file" };
        var json = new Option<bool>("--json") { Description = "print the report as JSON instead of tables" };
        var command = new Command("inspect", "Show the tensors (name, dtype, shape, bytes), metadata and total parameters of a safetensors file")
        {
            file,
            json,
        };
        command.SetAction(parse => CliAction.Run(terminal, () => Execute(terminal, parse.GetValue(file)!, parse.GetValue(json))));
        return command;
    }

    private static int Execute(Terminal terminal, string path, bool json)
    {
        if (Directory.Exists(path)) throw new UsageException($"FILE: '{path}' is a folder; expected a safetensors file");
        if (!File.Exists(path)) throw new UsageException($"FILE: '{path}' does not exist");
        InspectReport report;
        using (var reader = SafetensorsReader.Open(path)) report = InspectReport.From(reader);
        if (json) terminal.OutWriter.WriteLine(JsonSerializer.Serialize(report, InspectJsonContext.Default.InspectReport));
        else Render(terminal.Out, report);
        return ExitCodes.Success;
    }

    private static void Render(IAnsiConsole console, InspectReport report)
    {
        var tensors = new Table
        {
            Title = new TableTitle(report.File),
            Caption = new TableTitle($"{Number(report.TensorCount)} tensors, {Number(report.TotalParameters)} parameters, " +
                $"{Number(report.TotalBytes)} bytes of data in a {Number(report.FileBytes)}-byte file"),
        };
        tensors.AddColumn("name");
        tensors.AddColumn("dtype");
        tensors.AddColumn("shape");
        tensors.AddColumn(new TableColumn("parameters").RightAligned());
        tensors.AddColumn(new TableColumn("bytes").RightAligned());
        foreach (var t in report.Tensors)
            tensors.AddRow(new Text(t.Name), new Text(t.Dtype), new Text($"[{string.Join(", ", t.Shape)}]"),
                new Text(Number(t.Parameters)), new Text(Number(t.Bytes)));
        console.Write(tensors);
        console.WriteLine($"total parameters: {Number(report.TotalParameters)}");

        if (report.Metadata.Count == 0) return;
        var metadata = new Table { Title = new TableTitle("__metadata__") };
        metadata.AddColumn("key");
        metadata.AddColumn("value");
        foreach (var (key, value) in report.Metadata)
            metadata.AddRow(new Text(key), new Text(value.Length <= MaxValueLength ? value : $"{value[..MaxValueLength]}… ({Number(value.Length)} characters)"));
        console.Write(metadata);
    }

    private static string Number(long value) => value.ToString("N0", CultureInfo.InvariantCulture);
}

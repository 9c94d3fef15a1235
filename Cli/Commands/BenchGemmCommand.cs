using System.CommandLine;
using LoraRuntime.Cli.Bench;
using LoraRuntime.Cuda;
using Spectre.Console;

namespace LoraRuntime.Cli.Commands;

/// <summary><c>lora bench gemm</c>: float32 GEMM over a list of shapes.</summary>
internal static class BenchGemmCommand
{
    /// <summary>The command.</summary>
    public static Command Create(Terminal terminal)
    {
        var shapes = new Option<string>("--shapes")
        {
            Description = "comma-separated MxNxK sizes: C is MxN, op(A) MxK, op(B) KxN",
            DefaultValueFactory = _ => GemmShape.Defaults,
            HelpName = "MxNxK,...",
        };
        var trans = new Option<string>("--trans")
        {
            Description = "NN, NT, TN or TT: whether A and B are stored transposed",
            DefaultValueFactory = _ => "NN",
        };
        var precision = new Option<string>("--precision")
        {
            Description = "fp32, tf32 or bf16: how the GEMM computes (float32 storage always; tf32 and bf16 are CUDA tensor-core modes)",
            DefaultValueFactory = _ => "fp32",
        };
        var packed = new Option<bool>("--packed")
        {
            Description = "pack op(B) once (Backend.PackMatrix, as a served model's weights) and time GemmPacked; needs op(A) = A (--trans NN or NT)",
        };
        var common = new BenchOptions();
        var command = new Command("gemm", "Time C = op(A)·op(B) in float32 for each shape") { shapes, trans, precision, packed };
        common.AddTo(command);
        command.SetAction(parse => CliAction.Run(terminal, () => Execute(
            terminal,
            GemmShape.ParseList(parse.GetValue(shapes), "--shapes"),
            GemmTrans.Parse(parse.GetValue(trans), "--trans"),
            GemmBench.ParsePrecision(parse.GetValue(precision)),
            parse.GetValue(packed),
            common.Read(parse))));
        return command;
    }

    private static int Execute(Terminal terminal, IReadOnlyList<GemmShape> shapes, GemmTrans trans, CudaGemmPrecision precision, bool packed,
        BenchSettings settings)
    {
        if (packed && trans.A != Transpose.No)
            throw new UsageException($"--packed: a packed product takes A as stored, so --trans must be NN or NT; got {trans}");
        using var backend = BenchOptions.CreateBackend(settings.Device);
        GemmBench.SetPrecision(backend, precision);
        string op = GemmBench.OpName(precision) + (packed ? "-packed" : "");
        string title = $"{op} on {backend.Name} (kernel {GemmBench.KernelName(backend)})";
        terminal.Error.MarkupLine($"[grey]{Markup.Escape(title)}: warm-up {settings.Warmup}, reps {settings.Reps?.ToString() ?? "auto"}[/]");
        var records = new List<BenchRecord>(shapes.Count);
        foreach (var shape in shapes)
        {
            var record = GemmBench.Run(backend, shape, trans, settings.Warmup, settings.Reps, op: op, packed: packed);
            records.Add(record);
            terminal.Error.MarkupLine($"[grey]  {shape} {trans}: {record.MedianMs:0.000} ms, {record.Gflops:0.00} GFLOP/s[/]");
        }
        return Report(terminal, title, records, settings);
    }

    /// <summary>Prints the table of <paramref name="records"/> and writes the JSON file when asked; every bench command ends here.</summary>
    internal static int Report(Terminal terminal, string title, IReadOnlyList<BenchRecord> records, BenchSettings settings)
    {
        terminal.Out.Write(BenchReport.Table(title, records));
        if (settings.JsonPath is not null)
        {
            BenchReport.WriteJson(settings.JsonPath, records);
            terminal.Error.MarkupLine($"[grey]wrote {Markup.Escape(Path.GetFullPath(settings.JsonPath))}[/]");
        }
        return ExitCodes.Success;
    }
}

using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using LoraRuntime.Cli.Info;
using LoraRuntime.Cuda;
using LoraRuntime.IO;
using Spectre.Console;

namespace LoraRuntime.Cli.Commands;

/// <summary><c>lora info</c>: the device choice and why, what the CUDA probe tried, the CPU path and its pool.</summary>
internal static class InfoCommand
{
    /// <summary>The command.</summary>
    public static Command Create(Terminal terminal)
    {
        var json = new Option<string?>("--json") { Description = "also write the report as JSON to FILE (atomically)", HelpName = "FILE" };
        var deviceOption = new Option<string?>("--device")
        {
            Description = $"cpu, cuda or auto (default: ${Devices.EnvironmentVariable}, else auto); cuda fails, after the report, when CUDA is unusable",
        };
        var command = new Command("info", "Show the chosen device and why, every path probed for CUDA, CPU features and memory pool stats")
        {
            json,
            deviceOption,
        };
        command.SetAction(parse => DistributedAction.Run(terminal, (world, terminal) => Execute(terminal, world, parse.GetValue(json), parse.GetValue(deviceOption))));
        return command;
    }

    private static int Execute(Terminal terminal, Distributed.Communicator world, string? jsonPath, string? device)
    {
        if (jsonPath is not null) OutputPath.CheckWritable(jsonPath, "--json");
        var report = InfoReport.Gather(device, world);
        if (world.Rank != 0) return ExitCodes.Success; // rank 0 reports for the job
        Render(terminal.Out, report);
        if (jsonPath is not null)
        {
            AtomicFile.WriteAllBytes(jsonPath, JsonSerializer.SerializeToUtf8Bytes(report, InfoJsonContext.Default.InfoReport));
            terminal.Error.MarkupLine($"[grey]wrote {Markup.Escape(Path.GetFullPath(jsonPath))}[/]");
        }
        // An explicit device that cannot be had is an error, after the report that shows why.
        if (device is not null && report.Device.Chosen is null) throw new UsageException($"--device {device}: {report.Device.Reason}");
        return ExitCodes.Success;
    }

    private static void Render(IAnsiConsole console, InfoReport report)
    {
        var device = KeyValueTable("Device");
        device.AddRow(Text("requested"), Text(report.Device.Requested));
        device.AddRow(Text("chosen"), report.Device.Chosen is { } chosen ? new Markup($"[bold]{Markup.Escape(chosen)}[/]") : new Markup("[red]none[/]"));
        device.AddRow(Text("why"), Text(WithoutTriedList(report.Device.Reason)));
        console.Write(device);

        var cuda = KeyValueTable("CUDA driver");
        cuda.AddRow(Text("available"), report.Cuda.Available ? new Markup("[green]yes[/]") : new Markup("[yellow]no[/]"));
        cuda.AddRow(Text("driver version"), Text(report.Cuda.DriverVersionText));
        foreach (var d in report.Cuda.Devices)
            cuda.AddRow(Text($"device {d.Ordinal}"),
                Text($"{d.Name}, {d.Architecture}, {d.MultiprocessorCount} SMs, {Bytes(d.TotalMemoryBytes)}"));
        cuda.AddRow(Text("probe"), Text(WithoutTriedList(report.Cuda.Reason)));
        cuda.AddRow(Text("search folders"), Lines(report.Search.Folders, "none"));
        cuda.AddRow(Text("tried"), Lines(report.Cuda.Tried, "-"));
        console.Write(cuda);

        var libraries = new Table
        {
            Title = new TableTitle("CUDA libraries"),
            Caption = new TableTitle("tried: beyond the search notes listed for the driver"),
        };
        libraries.AddColumn("library");
        libraries.AddColumn("loaded from");
        libraries.AddColumn("tried");
        foreach (var library in report.Libraries.Where(l => l.Name != CudaEnvironment.DriverLibrary))
            libraries.AddRow(Text(library.Name),
                library.LoadedFrom is { } from ? new Markup($"[green]{Markup.Escape(from)}[/]") : new Markup("[yellow]not found[/]"),
                Lines(library.Tried, "-"));
        console.Write(libraries);

        if (report.CudaBackend is { } backend)
        {
            var table = KeyValueTable("CUDA backend");
            table.AddRow(Text("backend"), backend.Error is { } error ? new Markup($"[red]{Markup.Escape(error)}[/]") : Text(backend.Name));
            table.AddRow(Text("kernel compiler"), Text(backend.Nvrtc));
            table.AddRow(Text("kernel cache"), Text(backend.KernelCache));
            table.AddRow(Text("grouped GEMM"), Text(backend.GroupedGemm ? "cublasGemmGroupedBatchedEx" : "one cublasGemmEx per problem"));
            table.AddRow(Text("device pool reserved"), Text(Bytes(backend.Pool.BytesReserved)));
            console.Write(table);
        }

        var cpu = KeyValueTable("CPU");
        cpu.AddRow(Text("SIMD features"), Text(report.Cpu.Features.Count > 0 ? string.Join(", ", report.Cpu.Features) : "none"));
        cpu.AddRow(Text("widest vector"), Text(report.Cpu.VectorBits > 0 ? $"{report.Cpu.VectorBits} bits" : "none"));
        cpu.AddRow(Text("logical cores"), Text(Number(report.Cpu.LogicalCores)));
        cpu.AddRow(Text("worker threads"), Text(Number(report.Cpu.WorkerThreads)));
        cpu.AddRow(Text("GEMM kernel"), Text(report.Cpu.GemmKernel));
        cpu.AddRow(Text("Q8_0/Q4_0 kernel"), Text(report.Cpu.IntegerKernel));
        cpu.AddRow(Text("BF16 kernel"), Text(report.Cpu.Bf16Kernel));
        console.Write(cpu);

        var ranks = KeyValueTable("Ranks");
        ranks.AddRow(Text("ranks"), Text(report.Distributed.Ranks == 1 ? "1" : $"{report.Distributed.Ranks} (this is rank {report.Distributed.Rank}, on {report.Distributed.Host})"));
        ranks.AddRow(Text("transport"), Text(report.Distributed.Transport));
        ranks.AddRow(Text("library"), Text(report.Distributed.Library));
        ranks.AddRow(Text("launch"), Text(report.Distributed.Launch));
        console.Write(ranks);

        var pool = KeyValueTable("CPU memory pool");
        pool.AddRow(Text("bytes in use"), Text(Bytes(report.CpuPool.BytesInUse)));
        pool.AddRow(Text("bytes reserved"), Text(Bytes(report.CpuPool.BytesReserved)));
        pool.AddRow(Text("peak bytes in use"), Text(Bytes(report.CpuPool.PeakBytesInUse)));
        pool.AddRow(Text("cache hits / misses"), Text($"{Number(report.CpuPool.CacheHits)} / {Number(report.CpuPool.CacheMisses)}"));
        pool.AddRow(Text("system allocations / frees"), Text($"{Number(report.CpuPool.SystemAllocations)} / {Number(report.CpuPool.SystemFrees)}"));
        console.Write(pool);
    }

    /// <summary>The sentence before "; tried: …" (the list is shown in full in its own row).</summary>
    private static string WithoutTriedList(string reason)
    {
        int at = reason.IndexOf("; tried:", StringComparison.Ordinal);
        return at < 0 ? reason : reason[..at] + " (tried: see CUDA driver)";
    }

    private static Table KeyValueTable(string title)
    {
        var table = new Table { Title = new TableTitle(title) };
        table.AddColumn("");
        table.AddColumn("");
        table.HideHeaders();
        return table;
    }

    private static Text Text(string value) => new(value);

    private static Text Lines(IReadOnlyList<string> lines, string empty) => new(lines.Count > 0 ? string.Join('\n', lines) : empty);

    private static string Number(long value) => value.ToString("N0", CultureInfo.InvariantCulture);

    private static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):0.0} GiB ({Number(bytes)} B)",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):0.0} MiB ({Number(bytes)} B)",
        _ => $"{Number(bytes)} B",
    };
}

using System.Globalization;
using System.Text.Json;
using LoraRuntime.IO;
using Spectre.Console;

namespace LoraRuntime.Cli.Bench;

/// <summary>Writing and showing bench results.</summary>
internal static class BenchReport
{
    /// <summary>Writes <paramref name="records"/> as a JSON array to <paramref name="path"/>, atomically.</summary>
    public static void WriteJson(string path, IEnumerable<BenchRecord> records) =>
        AtomicFile.WriteAllBytes(path, JsonSerializer.SerializeToUtf8Bytes(records.ToArray(), BenchJsonContext.Default.BenchRecordArray));

    /// <summary>Reads a file written by <see cref="WriteJson(string, IEnumerable{BenchRecord})"/>.</summary>
    public static BenchRecord[] ReadJson(string path) =>
        JsonSerializer.Deserialize(File.ReadAllBytes(path), BenchJsonContext.Default.BenchRecordArray) ?? [];

    /// <summary>Writes SVD results as a JSON array to <paramref name="path"/>, atomically.</summary>
    public static void WriteJson(string path, IEnumerable<SvdBenchRecord> records) =>
        AtomicFile.WriteAllBytes(path, JsonSerializer.SerializeToUtf8Bytes(records.ToArray(), BenchJsonContext.Default.SvdBenchRecordArray));

    /// <summary>Reads a file written by <see cref="WriteJson(string, IEnumerable{SvdBenchRecord})"/>.</summary>
    public static SvdBenchRecord[] ReadSvdJson(string path) =>
        JsonSerializer.Deserialize(File.ReadAllBytes(path), BenchJsonContext.Default.SvdBenchRecordArray) ?? [];

    /// <summary>Writes latency results as a JSON array to <paramref name="path"/>, atomically.</summary>
    public static void WriteJson(string path, IEnumerable<LatencyRecord> records) =>
        AtomicFile.WriteAllBytes(path, JsonSerializer.SerializeToUtf8Bytes(records.ToArray(), BenchJsonContext.Default.LatencyRecordArray));

    /// <summary>Reads a file written by <see cref="WriteJson(string, IEnumerable{LatencyRecord})"/>.</summary>
    public static LatencyRecord[] ReadLatencyJson(string path) =>
        JsonSerializer.Deserialize(File.ReadAllBytes(path), BenchJsonContext.Default.LatencyRecordArray) ?? [];

    /// <summary>
    /// Latency results of one model as a table that fits 80 columns: op, adapter, reps, percentiles in milliseconds, p99/p50,
    /// tokens a second at the median and the collections during the timed calls (the JSON has every field, peak memory too).
    /// </summary>
    public static Table Table(string title, IEnumerable<LatencyRecord> records)
    {
        var table = new Table { Title = new TableTitle(title) };
        foreach (var column in new[] { "op", "adapter", "reps", "p50", "p99", "p99/p50", "tok/s", "GCs 0/1/2" })
            table.AddColumn(column is "op" or "adapter" ? new TableColumn(column) : new TableColumn(column).RightAligned());
        foreach (var r in records)
            table.AddRow(
                r.Op, r.Adapter, r.Reps.ToString(Invariant), r.P50Ms.ToString("0.000", Invariant), r.P99Ms.ToString("0.000", Invariant),
                r.P99OverP50.ToString("0.00", Invariant), r.TokensPerSecond.ToString("0.0", Invariant), $"{r.Gen0Collections}/{r.Gen1Collections}/{r.Gen2Collections}");
        return table;
    }

    /// <summary>SVD results as a table: operation, shape, reps, median, error (and the best rank-k error).</summary>
    public static Table Table(string title, IEnumerable<SvdBenchRecord> records)
    {
        var table = new Table { Title = new TableTitle(title) };
        table.AddColumn("op");
        table.AddColumn("shape");
        table.AddColumn(new TableColumn("reps").RightAligned());
        table.AddColumn(new TableColumn("median ms").RightAligned());
        table.AddColumn(new TableColumn("rel err").RightAligned());
        table.AddColumn(new TableColumn("best rel err").RightAligned());
        foreach (var r in records)
            table.AddRow(
                r.Op, string.Join("x", r.Shape), r.Reps.ToString(Invariant), r.MedianMs.ToString("0.000", Invariant),
                r.RelErr.ToString("0.0000e+0", Invariant), r.BestRelErr?.ToString("0.0000e+0", Invariant) ?? "");
        return table;
    }

    /// <summary>
    /// The results as a table: shape, trans, reps, median, GFLOP/s, error; with an op column when the records mix
    /// operations, and ratio and reserved-memory columns when any record has them.
    /// </summary>
    public static Table Table(string title, IEnumerable<BenchRecord> records)
    {
        var rows = records.ToList();
        bool ops = rows.Select(r => r.Op).Distinct().Count() > 1, ratios = rows.Any(r => r.Ratio is not null), reserved = rows.Any(r => r.ReservedBytes is not null);
        var table = new Table { Title = new TableTitle(title) };
        if (ops) table.AddColumn(new TableColumn("op").NoWrap());
        table.AddColumn("shape");
        table.AddColumn("trans");
        table.AddColumn(new TableColumn("reps").RightAligned());
        table.AddColumn(new TableColumn("median ms").RightAligned());
        table.AddColumn(new TableColumn("GFLOP/s").RightAligned());
        table.AddColumn(new TableColumn("rel err").RightAligned());
        if (ratios) table.AddColumn(new TableColumn("ratio").RightAligned());
        if (reserved) table.AddColumn(new TableColumn("reserved MiB").RightAligned());
        foreach (var r in rows)
        {
            var cells = new List<string>();
            if (ops) cells.Add(r.Op);
            cells.AddRange([string.Join("x", r.Shape), r.Trans, r.Reps.ToString(Invariant), r.MedianMs.ToString("0.000", Invariant),
                r.Gflops.ToString("0.00", Invariant), r.RelErr.ToString("0.0e+0", Invariant)]);
            if (ratios) cells.Add(r.Ratio?.ToString("0.000", Invariant) ?? "");
            if (reserved) cells.Add(r.ReservedBytes is { } bytes ? (bytes / 1048576.0).ToString("0.0", Invariant) : "");
            table.AddRow(cells.Select(Markup.Escape).ToArray());
        }
        return table;
    }

    private static CultureInfo Invariant => CultureInfo.InvariantCulture;
}

using System.Globalization;
using System.Text.Json.Serialization;
using LoraRuntime.Layers.Compression;
using Spectre.Console;

namespace LoraRuntime.Cli.LowRank;

/// <summary>One row of <c>lora compress</c>'s report (the JSON form of <see cref="CompressedLayer"/>).</summary>
internal sealed record CompressRow(string Layer, int[] Shape, int Rank, bool Factored, double KeptEnergy, double RelativeError,
    long ParametersBefore, long ParametersAfter);

/// <summary>Everything <c>lora compress</c> reports: per layer, totals, and the validation losses when data was given.</summary>
internal sealed record CompressReport(string Model, string Output, string Choice, IReadOnlyList<CompressRow> Layers,
    long LayerParametersBefore, long LayerParametersAfter, long ModelParametersBefore, long ModelParametersAfter,
    double? ValidationLossOriginal, double? ValidationLossCompressed, int? EvalIters, int? EvalBatch)
{
    /// <summary>The report of a compression.</summary>
    public static CompressReport From(string model, string output, RankChoice choice, IReadOnlyList<CompressedLayer> layers, long modelBefore,
        long modelAfter, (float Original, float Compressed, int Iters, int Batch)? losses) =>
        new(model, output, choice.ToString(),
            layers.Select(l => new CompressRow(l.Layer, [l.OutFeatures, l.InFeatures], l.Rank, l.Factored, l.KeptEnergy, l.RelativeError,
                l.ParametersBefore, l.ParametersAfter)).ToList(),
            layers.Sum(l => l.ParametersBefore), layers.Sum(l => l.ParametersAfter), modelBefore, modelAfter,
            losses?.Original, losses?.Compressed, losses?.Iters, losses?.Batch);

    /// <summary>The Spectre table and the summary lines.</summary>
    public void Render(IAnsiConsole console)
    {
        var table = new Table { Title = new TableTitle($"compress ({Choice})") };
        table.AddColumn("layer");
        table.AddColumn("shape");
        table.AddColumn(new TableColumn("rank").RightAligned());
        table.AddColumn(new TableColumn("kept energy").RightAligned());
        table.AddColumn(new TableColumn("rel. error").RightAligned());
        table.AddColumn(new TableColumn("params before").RightAligned());
        table.AddColumn(new TableColumn("params after").RightAligned());
        foreach (var row in Layers)
            table.AddRow(new Text(row.Layer), new Text($"[{row.Shape[0]}, {row.Shape[1]}]"),
                new Text(row.Factored ? Number(row.Rank) : $"{row.Rank} (dense)"), new Text(row.KeptEnergy.ToString("0.0000", CultureInfo.InvariantCulture)),
                new Text(row.RelativeError.ToString("0.00E+00", CultureInfo.InvariantCulture)), new Text(Number(row.ParametersBefore)), new Text(Number(row.ParametersAfter)));
        table.AddRow(new Text("total"), new Text(""), new Text(""), new Text(""), new Text(""), new Text(Number(LayerParametersBefore)),
            new Text(Number(LayerParametersAfter)));
        console.Write(table);
        console.WriteLine($"model parameters: {Number(ModelParametersBefore)} → {Number(ModelParametersAfter)} " +
            $"({(100.0 * ModelParametersAfter / ModelParametersBefore).ToString("0.0", CultureInfo.InvariantCulture)}%)");
        if (Layers.Any(l => !l.Factored)) console.WriteLine("(dense: K·(OC + C) ≥ OC·C would not save parameters, so the layer is kept as it was)");
        else if (Layers.Any(l => l.ParametersAfter >= l.ParametersBefore))
            console.WriteLine("note: some layers' factors hold more parameters than W (K·(OC + C) ≥ OC·C); --keep-dense-if-larger leaves those dense");
        if (ValidationLossOriginal is { } before && ValidationLossCompressed is { } after)
            console.WriteLine($"validation loss ({EvalIters} batches of {EvalBatch}, last 10% of the corpus): original {before.ToString("0.0000", CultureInfo.InvariantCulture)}, " +
                $"compressed {after.ToString("0.0000", CultureInfo.InvariantCulture)}");
    }

    private static string Number(long value) => value.ToString("N0", CultureInfo.InvariantCulture);
}

/// <summary>Source-generated JSON for the low-rank tools' reports.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true)]
[JsonSerializable(typeof(CompressReport))]
[JsonSerializable(typeof(ExtractReport))]
internal sealed partial class LowRankJsonContext : JsonSerializerContext;

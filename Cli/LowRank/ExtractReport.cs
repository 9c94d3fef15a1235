using System.Globalization;
using LoraRuntime.Layers.Compression;
using Spectre.Console;

namespace LoraRuntime.Cli.LowRank;

/// <summary>One module of <c>lora extract</c>'s report.</summary>
internal sealed record ExtractRow(string Module, int[] Shape, int Rank, double KeptEnergy, double RelativeError, double DeltaNorm);

/// <summary>What <c>lora extract</c> reports.</summary>
internal sealed record ExtractReport(string Base, string Tuned, string Output, int Rank, double LoraAlpha, IReadOnlyList<ExtractRow> Modules)
{
    /// <summary>The report of an extraction.</summary>
    public static ExtractReport From(string baseDir, string tuned, string output, int rank, IReadOnlyList<ExtractedModule> modules) =>
        new(baseDir, tuned, output, rank, rank,
            modules.Select(m => new ExtractRow(m.Module, [m.OutFeatures, m.InFeatures], m.Rank, m.KeptEnergy, m.RelativeError, m.DeltaNorm)).ToList());

    /// <summary>The Spectre table.</summary>
    public void Render(IAnsiConsole console)
    {
        var table = new Table { Title = new TableTitle($"extract (r = {Rank}, lora_alpha = {Rank}: scale 1)") };
        table.AddColumn("module");
        table.AddColumn("shape");
        table.AddColumn(new TableColumn("rank").RightAligned());
        table.AddColumn(new TableColumn("‖ΔW‖_F").RightAligned());
        table.AddColumn(new TableColumn("kept energy").RightAligned());
        table.AddColumn(new TableColumn("rel. error").RightAligned());
        foreach (var row in Modules)
            table.AddRow(new Text(row.Module), new Text($"[{row.Shape[0]}, {row.Shape[1]}]"), new Text(row.Rank.ToString(CultureInfo.InvariantCulture)),
                new Text(row.DeltaNorm.ToString("0.000E+00", CultureInfo.InvariantCulture)), new Text(row.KeptEnergy.ToString("0.0000", CultureInfo.InvariantCulture)),
                new Text(row.RelativeError.ToString("0.000E+00", CultureInfo.InvariantCulture)));
        console.Write(table);
    }
}

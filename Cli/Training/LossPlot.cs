namespace LoraRuntime.Cli.Training;

/// <summary>Loss curves as a PNG: training loss per step and evaluation points, written atomically.</summary>
internal static class LossPlot
{
    /// <summary>Draws the curves of <paramref name="log"/> to <paramref name="path"/>.</summary>
    public static void Save(string path, string title, TrainingLog log)
    {
        var plot = new ScottPlot.Plot();
        if (log.Steps.Count > 0)
        {
            var train = plot.Add.Scatter(log.Steps.Select(s => (double)s.Step).ToArray(), log.Steps.Select(s => (double)s.Loss).ToArray());
            train.LegendText = "train (per step)";
            train.MarkerSize = 0;
            train.LineWidth = 1;
        }
        if (log.Evaluations.Count > 0)
        {
            double[] at = log.Evaluations.Select(e => (double)e.Step).ToArray();
            var tr = plot.Add.Scatter(at, log.Evaluations.Select(e => (double)e.Train).ToArray());
            tr.LegendText = "train (eval)";
            var va = plot.Add.Scatter(at, log.Evaluations.Select(e => (double)e.Validation).ToArray());
            va.LegendText = "validation (eval)";
        }
        plot.Title(title);
        plot.XLabel("step");
        plot.YLabel("cross-entropy (nats)");
        plot.ShowLegend();
        plot.Legend.Alignment = ScottPlot.Alignment.UpperRight; // the curves end low and right
        string temp = path + ".tmp";
        plot.SavePng(temp, 800, 480);
        File.Move(temp, path, overwrite: true);
    }
}

/// <summary>What a run recorded: every step and every evaluation.</summary>
internal sealed class TrainingLog
{
    public List<LoraRuntime.Layers.Training.StepResult> Steps { get; } = [];
    public List<(int Step, float Train, float Validation)> Evaluations { get; } = [];
}

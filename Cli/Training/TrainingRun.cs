using System.Text.Json;
using LoraRuntime.IO;
using LoraRuntime.Layers.Training;
using Spectre.Console;

namespace LoraRuntime.Cli.Training;

/// <summary>The figures of a finished run (the summary JSON of <c>lora train</c> and <c>lora finetune</c>).</summary>
internal sealed record TrainingSummary(int Iterations, float TrainLoss, float ValidationLoss, double MedianMsPerIteration,
    double TokensPerSecond, int SkippedSteps, long TrainedParameters, int Ranks = 1, double MedianAllReduceMs = 0);

/// <summary>Drives a <see cref="Trainer"/> with a progress bar, periodic evaluation and checkpoints.</summary>
internal static class TrainingRun
{
    /// <summary>Runs the remaining steps; evaluates every EvalEvery steps and at the end; checkpoints into <paramref name="checkpoints"/> when given.</summary>
    public static TrainingSummary Run(Terminal terminal, Trainer trainer, string label, long trainedParameters, int tokensPerStep,
        string? checkpoints, TrainingLog log)
    {
        var options = trainer.Options;
        var times = new List<double>(options.Iterations);
        var reduceTimes = new List<double>(options.Iterations);
        (float Train, float Validation) last = (float.NaN, float.NaN);
        void Evaluate()
        {
            last = trainer.Evaluate();
            log.Evaluations.Add((trainer.Step, last.Train, last.Validation));
            terminal.Error.MarkupLine($"[grey]{Markup.Escape(label)} step {trainer.Step}: train {last.Train:0.0000}, val {last.Validation:0.0000}[/]");
        }
        terminal.Error.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(label), maxValue: Math.Max(1, options.Iterations));
                task.Value = trainer.Step;
                while (trainer.Step < options.Iterations)
                {
                    if (trainer.Step % options.EvalEvery == 0) Evaluate();
                    var step = trainer.TrainStep();
                    times.Add(step.Milliseconds);
                    reduceTimes.Add(step.AllReduceMilliseconds);
                    log.Steps.Add(step);
                    task.Value = trainer.Step;
                    task.Description = Markup.Escape($"{label} loss {step.Loss:0.000}");
                    if (checkpoints is not null && trainer.Step % options.EvalEvery == 0 && trainer.Step < options.Iterations)
                        trainer.SaveCheckpoint(checkpoints);
                }
            });
        Evaluate();
        if (checkpoints is not null) trainer.SaveCheckpoint(checkpoints);
        // The first steps pay for first-call compilation and page faults: leave them out of the median, as the reference does.
        double median = SteadyMedian(times), reduceMedian = trainer.World.IsDistributed ? SteadyMedian(reduceTimes) : 0;
        return new TrainingSummary(options.Iterations, last.Train, last.Validation, median, tokensPerStep / (median / 1000.0),
            trainer.SkippedSteps, trainedParameters, trainer.World.Size, reduceMedian);
    }

    private static double SteadyMedian(List<double> times)
    {
        var steady = times.Skip(Math.Min(10, times.Count / 2)).Order().ToList();
        return steady.Count == 0 ? double.NaN : steady[steady.Count / 2];
    }

    /// <summary>
    /// With <paramref name="resume"/>, restores the latest checkpoint under <paramref name="checkpoints"/> into
    /// <paramref name="trainer"/>, with the run's errors in the user's words (a checkpoint of another run, or one already
    /// past --iters); without, refuses a folder that holds an earlier run's checkpoints rather than mixing them.
    /// </summary>
    public static void Start(Terminal terminal, Trainer trainer, string outDir, string checkpoints, bool resume)
    {
        if (!resume)
        {
            if (Directory.Exists(checkpoints) && Directory.EnumerateFileSystemEntries(checkpoints).Any())
                throw new UsageException($"--out: '{outDir}' holds the checkpoints of an earlier run; pass --resume to continue it, or write to another folder");
            return;
        }
        try
        {
            trainer.ResumeFrom(checkpoints);
        }
        catch (FileNotFoundException)
        {
            throw new UsageException($"--resume: '{checkpoints}' holds no checkpoint ('latest' is missing)");
        }
        catch (Exception e) when (e is InvalidDataException or ArgumentException or KeyNotFoundException)
        {
            string why = e is ArgumentException { ParamName: { } p } ? e.Message.Replace($" (Parameter '{p}')", "", StringComparison.Ordinal) : e.Message;
            throw new UsageException($"--resume: the checkpoint in '{checkpoints}' does not fit this run (another architecture, corpus or adapter?): {why}");
        }
        int iterations = trainer.Options.Iterations;
        if (trainer.Step >= iterations)
            throw new UsageException($"--iters: the checkpoint is at step {trainer.Step}, already past --iters {iterations} (the run's total); give a larger --iters to train further");
        terminal.Error.MarkupLine($"[grey]resumed at step {trainer.Step} of {iterations} from {Markup.Escape(checkpoints)}[/]");
    }

    /// <summary>Writes <paramref name="summary"/> (plus the device) as JSON, atomically.</summary>
    public static void WriteJson(string path, TrainingSummary summary, string device, TrainingLog log)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteNumber("iters", summary.Iterations);
            json.WriteNumber("train_loss", summary.TrainLoss);
            json.WriteNumber("val_loss", summary.ValidationLoss);
            json.WriteNumber("ms_per_iter_median", Math.Round(summary.MedianMsPerIteration, 3));
            json.WriteNumber("tokens_per_s", Math.Round(summary.TokensPerSecond, 1));
            json.WriteNumber("skipped_steps", summary.SkippedSteps);
            json.WriteNumber("trained_parameters", summary.TrainedParameters);
            json.WriteNumber("ranks", summary.Ranks);
            json.WriteNumber("allreduce_ms_median", Math.Round(summary.MedianAllReduceMs, 3));
            json.WriteString("device", device);
            json.WriteStartArray("evaluations");
            foreach (var (step, train, validation) in log.Evaluations)
            {
                json.WriteStartObject();
                json.WriteNumber("step", step);
                json.WriteNumber("train_loss", train);
                json.WriteNumber("val_loss", validation);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        AtomicFile.WriteAllBytes(path, stream.ToArray());
    }
}

namespace LoraRuntime.Layers.Training;

/// <summary>
/// A model's dropout as a <see cref="Trainer"/> drives it (LoRA dropout): off while the trainer evaluates (PEFT's
/// <c>model.eval()</c>), on the global batch's rows this rank holds, and, when a run resumes, continued from the
/// training passes before the checkpoint, so that the masks are those of the uninterrupted run.
/// </summary>
internal interface IDropoutLayers
{
    /// <summary>Training mode: dropout is applied.</summary>
    bool Training { get; set; }

    /// <summary>The row of the global batch that this process's row 0 is.</summary>
    int BatchFirstRow { get; set; }

    /// <summary>Training forward passes so far (each draws fresh masks from it).</summary>
    long TrainingPasses { get; set; }
}

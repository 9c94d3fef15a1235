namespace LoraRuntime.Layers.Training;

/// <summary>
/// Linear warm-up towards <see cref="MaxRate"/> over <see cref="WarmupSteps"/> (rate·(step+1)/(warm-up+1)), then cosine decay to
/// <see cref="MinRate"/> at <see cref="DecaySteps"/>, constant after: the schedule of ../shared/anchors/torch_gpt_char.py.
/// </summary>
internal sealed record LearningRateSchedule
{
    /// <summary>A schedule; rates must be finite with 0 ≤ min ≤ max, and 0 ≤ warm-up ≤ decay steps.</summary>
    public LearningRateSchedule(double maxRate, double minRate, int warmupSteps, int decaySteps)
    {
        if (!double.IsFinite(maxRate) || maxRate < 0)
            throw new ArgumentOutOfRangeException(nameof(maxRate), maxRate, "the learning rate must be finite and ≥ 0");
        if (!double.IsFinite(minRate) || minRate < 0 || minRate > maxRate)
            throw new ArgumentOutOfRangeException(nameof(minRate), minRate, $"the minimum rate must be in [0, maxRate = {maxRate}]");
        if (warmupSteps < 0) throw new ArgumentOutOfRangeException(nameof(warmupSteps), warmupSteps, "warmupSteps must be ≥ 0");
        if (decaySteps < 0) throw new ArgumentOutOfRangeException(nameof(decaySteps), decaySteps, "decaySteps must be ≥ 0");
        (MaxRate, MinRate, WarmupSteps, DecaySteps) = (maxRate, minRate, warmupSteps, decaySteps);
    }

    /// <summary>The peak rate.</summary>
    public double MaxRate { get; }

    /// <summary>The final rate.</summary>
    public double MinRate { get; }

    /// <summary>Steps of linear warm-up.</summary>
    public int WarmupSteps { get; }

    /// <summary>The step at which the decay reaches <see cref="MinRate"/>.</summary>
    public int DecaySteps { get; }

    /// <summary>The rate at 0-based <paramref name="step"/>.</summary>
    public double RateAt(int step)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), step, "step must be ≥ 0");
        if (step < WarmupSteps) return MaxRate * (step + 1) / (WarmupSteps + 1);
        double progress = Math.Min(1.0, (double)(step - WarmupSteps) / Math.Max(1, DecaySteps - WarmupSteps));
        return MinRate + 0.5 * (1 + Math.Cos(Math.PI * progress)) * (MaxRate - MinRate);
    }
}

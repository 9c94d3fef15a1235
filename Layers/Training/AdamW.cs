namespace LoraRuntime.Layers.Training;

/// <summary>
/// AdamW over a <see cref="ParameterSet"/> reserved with gradients, as torch.optim.AdamW with decoupled weight decay
/// applied to matrices only (parameters of rank ≥ 2: weights and embeddings, not biases or norms). The moments m and
/// v are two blocks of the parameters' layout; their per-parameter views are made once, so a step allocates nothing.
/// </summary>
internal sealed class AdamW : IDisposable
{
    private readonly ParameterSet _parameters;
    private readonly Tensor _m, _v;
    private readonly (Tensor Value, Tensor Gradient, Tensor M, Tensor V, bool Decay)[] _slots;

    /// <summary>An optimizer for <paramref name="parameters"/> with zeroed moments.</summary>
    public AdamW(ParameterSet parameters, float beta1 = 0.9f, float beta2 = 0.99f, float epsilon = 1e-8f, float weightDecay = 0.1f)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (!parameters.HasGradients)
            throw new ArgumentException($"parameters: {parameters.Name} has no gradients (frozen or not reserved); nothing to optimise", nameof(parameters));
        if (!(beta1 >= 0 && beta1 < 1)) throw new ArgumentOutOfRangeException(nameof(beta1), beta1, "beta1 must be in [0, 1)");
        if (!(beta2 >= 0 && beta2 < 1)) throw new ArgumentOutOfRangeException(nameof(beta2), beta2, "beta2 must be in [0, 1)");
        if (!(epsilon > 0)) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "epsilon must be > 0");
        if (!(weightDecay >= 0) || float.IsInfinity(weightDecay)) throw new ArgumentOutOfRangeException(nameof(weightDecay), weightDecay, "weightDecay must be finite and ≥ 0");
        (_parameters, Beta1, Beta2, Epsilon, WeightDecay) = (parameters, beta1, beta2, epsilon, weightDecay);
        var backend = parameters.Backend;
        _m = backend.Zeros(DType.F32, parameters.Values.Shape);
        _v = backend.Zeros(DType.F32, parameters.Values.Shape);
        _slots = Runs(parameters).Select(r =>
        {
            var shape = new Shape(checked((int)(r.End - r.Start)));
            return (parameters.Values.View(r.Start, shape), parameters.Gradients.View(r.Start, shape), _m.View(r.Start, shape), _v.View(r.Start, shape), r.Decay);
        }).ToArray();
    }

    /// <summary>
    /// The trained parameters as runs of neighbours in the block that share the decay flag: one step per run instead of
    /// per parameter (a layer's bias and the next norm's weight and bias, say), most of which are too small to share out
    /// over the threads. A run spans the alignment gaps between its parameters, which are zero in the values,
    /// gradients and moments and stay so; each element gets the same arithmetic as in a step of its own.
    /// </summary>
    private static List<(long Start, long End, bool Decay)> Runs(ParameterSet parameters)
    {
        var runs = new List<(long Start, long End, bool Decay)>();
        Parameter? previous = null;
        foreach (var p in parameters.Parameters.OrderBy(p => p.Offset))
        {
            bool decay = p.Shape.Rank >= 2;
            bool joins = p.HasGradient && previous is not null && runs.Count > 0 && runs[^1].Decay == decay && runs[^1].End == previous.Offset + previous.Shape.Length
                && AlignedEnd(previous) == p.Offset;
            if (joins) runs[^1] = (runs[^1].Start, p.Offset + p.Shape.Length, decay);
            else if (p.HasGradient) runs.Add((p.Offset, p.Offset + p.Shape.Length, decay));
            previous = p.HasGradient ? p : null;
        }
        return runs;
    }

    private static long AlignedEnd(Parameter p) => (p.Offset + p.Shape.Length + Reservation.Alignment - 1) / Reservation.Alignment * Reservation.Alignment;

    /// <summary>β₁.</summary>
    public float Beta1 { get; }

    /// <summary>β₂.</summary>
    public float Beta2 { get; }

    /// <summary>ε.</summary>
    public float Epsilon { get; }

    /// <summary>Decoupled weight decay of matrices.</summary>
    public float WeightDecay { get; }

    /// <summary>Steps taken (the bias correction uses it).</summary>
    public int Step { get; private set; }

    /// <summary>The first moments, in the parameters' layout (for checkpoints).</summary>
    public Tensor FirstMoments => _m;

    /// <summary>The second moments, in the parameters' layout (for checkpoints).</summary>
    public Tensor SecondMoments => _v;

    /// <summary>One update of every trained parameter at <paramref name="learningRate"/>.</summary>
    public void Update(float learningRate)
    {
        var backend = _parameters.Backend;
        int step = ++Step;
        foreach (var (value, gradient, m, v, decay) in _slots)
            backend.AdamWStep(value, gradient, m, v, learningRate, Beta1, Beta2, Epsilon, decay ? WeightDecay : 0f, step);
    }

    /// <summary>Restores the step count of a checkpoint (the moments are restored through their tensors).</summary>
    public void RestoreStep(int step)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        Step = step;
    }

    /// <summary>Returns the moments to the pool.</summary>
    public void Dispose()
    {
        _m.Dispose();
        _v.Dispose();
    }
}

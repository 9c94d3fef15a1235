namespace LoraRuntime.Layers;

/// <summary>The shape of <see cref="LowRankAttention"/>'s sequence projections.</summary>
internal sealed record LowRankAttentionOptions
{
    /// <summary>K: the number of rows keys and values are projected to along the sequence (Linformer's k).</summary>
    public int ProjectedLength { get; init; } = 64;

    /// <summary>One E (and F) for all heads instead of one per head.</summary>
    public bool ShareHeads { get; init; }

    /// <summary>F = E: keys and values share their projection.</summary>
    public bool ShareKeyValue { get; init; }
}

/// <summary>
/// Linformer self-attention (non-causal, for encoders): per head, keys and values are projected along the sequence
/// to K rows, k′ = E k and v′ = F v with E, F [K, T_max] (the first T columns for a shorter sequence), then
/// att = softmax(q k′ᵀ / √HS) over the K projected positions and y = att v′. Scores take B·NH·T·K floats and
/// O(T·K·HS) time per head instead of O(T²·HS). QKV and output projections as in <see cref="CausalSelfAttention"/>.
/// Shapes: q, k, v [B, NH, T, HS]; k′, v′ [B, NH, K, HS]; att [B, NH, T, K]; E, F [NH or 1, K, T_max].
/// </summary>
internal sealed class LowRankAttention
{
    private readonly Activations _activations;
    private readonly AttentionHeads _heads;
    private readonly ActivationBuffer _keys, _values, _att, _dKeys, _dValues, _dAtt, _dScores;

    /// <summary>Declares "<paramref name="name"/>.qkv", ".o", ".E" (and ".F") for sequences of up to the activations' maximum T.</summary>
    public LowRankAttention(ParameterSet parameters, Activations activations, string name, int channels, int heads, LowRankAttentionOptions options)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(options);
        Guard.Positive(options.ProjectedLength, nameof(options.ProjectedLength));
        _activations = activations;
        _heads = new AttentionHeads(parameters, activations, name, channels, heads);
        Name = name;
        Options = options;
        MaxTime = activations.MaxTime;
        int k = options.ProjectedLength, hs = _heads.HeadSize, projections = options.ShareHeads ? 1 : heads;
        E = parameters.Add(name + ".E", projections, k, MaxTime);
        F = options.ShareKeyValue ? E : parameters.Add(name + ".F", projections, k, MaxTime);
        Func<int, int, Shape> projected = (b, _) => new Shape(b, heads, k, hs), scores = (b, t) => new Shape(b, heads, t, k);
        _keys = activations.Add(name + ".keys.projected", projected);
        _values = activations.Add(name + ".values.projected", projected);
        _att = activations.Add(name + ".att", scores);
        _dKeys = activations.AddGradient(name + ".keys.dprojected", projected);
        _dValues = activations.AddGradient(name + ".values.dprojected", projected);
        _dAtt = activations.AddGradient(name + ".datt", scores);
        _dScores = activations.AddGradient(name + ".dscores", scores);
    }

    /// <summary>The module path.</summary>
    public string Name { get; }

    /// <summary>The projections' options.</summary>
    public LowRankAttentionOptions Options { get; }

    /// <summary>T_max, the longest sequence (the columns of E and F).</summary>
    public int MaxTime { get; }

    /// <summary>C.</summary>
    public int Channels => _heads.Channels;

    /// <summary>NH.</summary>
    public int HeadCount => _heads.HeadCount;

    /// <summary>The fused projection [3C, C].</summary>
    public Linear Qkv => _heads.Qkv;

    /// <summary>The output projection [C, C].</summary>
    public Linear Out => _heads.Out;

    /// <summary>The key projection E [NH or 1, K, T_max].</summary>
    public Parameter E { get; }

    /// <summary>The value projection F (E itself when shared).</summary>
    public Parameter F { get; }

    /// <summary>E and F uniform in ±1/√K, as the reference Linformer starts them; reproducible from <paramref name="seed"/>.</summary>
    public void InitializeProjections(ulong seed)
    {
        foreach (var p in ReferenceEquals(E, F) ? new[] { E } : [E, F])
            p.Value.CopyFrom(CounterRandom.Uniform(CounterRandom.Seed(seed, p.Name), p.Shape.Length, 1 / Math.Sqrt(Options.ProjectedLength)));
    }

    /// <summary>output [B, T, C] = attention(input [B, T, C]), T ≤ T_max.</summary>
    public void Forward(Tensor output, Tensor input)
    {
        var (batch, time) = Guard.Input(_activations, input, nameof(input), Channels);
        var (q, k, v) = _heads.ForwardQkv(input, batch, time);
        Tensor keys = _keys.For(batch, time), values = _values.For(batch, time);
        // k′ = E k and v′ = F v per (b, h); att [T, K] = softmax(q k′ᵀ / √HS), y = att v′.
        Project(keys, E.Value, k, batch, time);
        Project(values, F.Value, v, batch, time);
        _heads.Attend(_att.For(batch, time), q, keys, values, batch, time, Options.ProjectedLength, causal: false);
        _heads.ForwardOut(output, batch, time);
    }

    /// <summary>dInput += ∂L/∂input and the parameters' gradients; needs the forward pass of this input just before.</summary>
    public void Backward(Tensor? dInput, Tensor dOutput, Tensor input)
    {
        var (batch, time) = Guard.Input(_activations, input, nameof(input), Channels);
        Guard.Sequence(dOutput, nameof(dOutput), batch, time, Channels);
        Tensor dy = _heads.BackwardOut(dOutput, batch, time);
        var (q, k, v) = _heads.Split(batch, time);
        var (dq, dk, dv) = _heads.SplitGradients(batch, time);
        Tensor dKeys = _dKeys.For(batch, time), dValues = _dValues.For(batch, time);
        _heads.AttendBackward(dq, dKeys, dValues, _dAtt.For(batch, time), _dScores.For(batch, time), dy, q, _keys.For(batch, time),
            _values.For(batch, time), _att.For(batch, time), batch, time, Options.ProjectedLength, causal: false);
        // k′ = E k: dk = Eᵀ dk′ and dE += dk′ kᵀ; likewise v.
        ProjectBack(dk, dKeys, E, k, batch, time);
        ProjectBack(dv, dValues, F, v, batch, time);
        _heads.BackwardQkv(dInput, input, batch, time);
    }

    /// <summary>projected [B, NH, K, HS] = P_h[:, :T] · x [B, NH, T, HS] for P [NH or 1, K, T_max].</summary>
    private void Project(Tensor projected, Tensor projection, Tensor x, int batch, int time)
    {
        int hs = _heads.HeadSize, kp = Options.ProjectedLength;
        var problem = new GemmProblem(projected, projection, x, kp, hs, time) { Lda = MaxTime };
        long xStride = (long)time * hs, projectedStride = (long)kp * hs;
        if (Options.ShareHeads)
        {
            _heads.Backend.GemmStridedBatched(problem, 0, xStride, projectedStride, batch * HeadCount);
            return;
        }
        for (int b = 0; b < batch; b++)
        {
            problem.OffsetB = b * HeadCount * xStride;
            problem.OffsetC = b * HeadCount * projectedStride;
            _heads.Backend.GemmStridedBatched(problem, (long)kp * MaxTime, xStride, projectedStride, HeadCount);
        }
    }

    /// <summary>dx [B, NH, T, HS] = P_hᵀ · dprojected (written) and, unless frozen, dP_h[:, :T] += dprojected · xᵀ.</summary>
    private void ProjectBack(Tensor dx, Tensor dProjected, Parameter projection, Tensor x, int batch, int time)
    {
        var backend = _heads.Backend;
        int hs = _heads.HeadSize, kp = Options.ProjectedLength;
        long xStride = (long)time * hs, projectedStride = (long)kp * hs, projectionStride = Options.ShareHeads ? 0 : (long)kp * MaxTime;
        var input = new GemmProblem(dx, projection.Value, dProjected, time, hs, kp, Transpose.Yes) { Lda = MaxTime };
        for (int b = 0; b < batch; b++)
        {
            input.OffsetB = b * HeadCount * projectedStride;
            input.OffsetC = b * HeadCount * xStride;
            backend.GemmStridedBatched(input, projectionStride, projectedStride, xStride, HeadCount);
        }
        if (!projection.HasGradient) return;
        // Every (b, h) adds into the same dP_h (or the one shared dP): GEMMs with β = 1, one at a time.
        var gradient = new GemmProblem(projection.Gradient, dProjected, x, kp, time, hs, Transpose.No, Transpose.Yes, beta: 1f) { Ldc = MaxTime };
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < HeadCount; h++)
            {
                int i = b * HeadCount + h;
                gradient.OffsetA = i * projectedStride;
                gradient.OffsetB = i * xStride;
                gradient.OffsetC = h * projectionStride;
                backend.Gemm(gradient);
            }
    }
}

namespace LoraRuntime.Layers.Adapters;

/// <summary>
/// One adapter's weights on one module (PEFT's lora_A[name], lora_B[name]): A [R, in], B [out, R], the scale s, the
/// dropout, an optional DoRA magnitude, and the activations its passes keep. The module's output slice is the
/// columns [offset, offset + out) of the base layer's [B, T, OC] output, addressed through GEMM offsets and ldc = OC.
/// </summary>
internal sealed class LoraWeights
{
    private readonly LoraAdapter _adapter;
    private readonly Activations _scratch;
    private readonly ActivationBuffer _h, _dh;
    private readonly ActivationBuffer? _dropped;
    private readonly ulong _seed;
    private readonly GemmProblem[] _pair = new GemmProblem[2]; // two independent products run as one grouped call
    private ulong _step, _maskSeed, _maskFirst;

    internal LoraWeights(LoraAdapter adapter, LoraLinear module, LoraOptions options, ParameterSet parameters, Activations scratch,
        ActivationBuffer? directionScratch)
    {
        _adapter = adapter;
        _scratch = scratch;
        Module = module;
        Options = options;
        Scale = options.Scale;
        int rank = options.Rank, inFeatures = module.InFeatures;
        A = parameters.Add(module.Path + ".lora_A.weight", rank, inFeatures);
        B = parameters.Add(module.Path + ".lora_B.weight", module.OutFeatures, rank);
        _h = scratch.Add(module.Path + ".lora.h", (b, t) => new Shape(b, t, rank));
        _dh = scratch.AddGradient(module.Path + ".lora.dh", (b, t) => new Shape(b, t, rank));
        if (options.Dropout > 0) _dropped = scratch.Add(module.Path + ".lora.dropout", (b, t) => new Shape(b, t, inFeatures));
        if (options.UseDora) Dora = new DoraMagnitude(this, parameters, scratch, directionScratch!);
        _seed = CounterRandom.Seed(options.Seed, module.Path);
    }

    /// <summary>The adapter's name.</summary>
    public string AdapterName => _adapter.Name;

    /// <summary>The module the weights adapt.</summary>
    public LoraLinear Module { get; }

    /// <summary>The options they were created with.</summary>
    public LoraOptions Options { get; }

    /// <summary>R.</summary>
    public int Rank => Options.Rank;

    /// <summary>s = α/R (α/√R with rsLoRA).</summary>
    public float Scale { get; }

    /// <summary>A [R, in].</summary>
    public Parameter A { get; }

    /// <summary>B [out, R].</summary>
    public Parameter B { get; }

    /// <summary>DoRA's magnitude [out], or null for plain LoRA.</summary>
    public Parameter? Magnitude => Dora?.Magnitude;

    /// <summary>True while the delta is folded into the base weight.</summary>
    public bool IsMerged { get; internal set; }

    internal DoraMagnitude? Dora { get; }

    /// <summary>Training forward passes so far (each draws its dropout mask from the next count).</summary>
    internal ulong TrainingPasses { get => _step; set => _step = value; }

    /// <summary>The seed of the dropout mask of the last training forward pass.</summary>
    internal ulong MaskSeed => _maskSeed;

    private Backend Backend => A.Owner.Backend;

    /// <summary>Fills A and B as <see cref="LoraOptions.Init"/> says, then DoRA's magnitude as ‖W + s·BA‖ per row.</summary>
    internal void Initialize()
    {
        int inFeatures = Module.InFeatures;
        ulong seedA = CounterRandom.Mix64(_seed ^ 0xA), seedB = CounterRandom.Mix64(_seed ^ 0xB);
        switch (Options.Init)
        {
            case LoraInit.Default:
                A.Value.CopyFrom(CounterRandom.Uniform(seedA, A.Shape.Length, 1 / Math.Sqrt(inFeatures)));
                Backend.Fill(B.Value, 0f);
                break;
            case LoraInit.Gaussian:
                A.Value.CopyFrom(CounterRandom.Normal(seedA, A.Shape.Length, 1.0 / Rank));
                Backend.Fill(B.Value, 0f);
                break;
            case LoraInit.Random:
                A.Value.CopyFrom(CounterRandom.Uniform(seedA, A.Shape.Length, 1 / Math.Sqrt(inFeatures)));
                B.Value.CopyFrom(CounterRandom.Uniform(seedB, B.Shape.Length, 1 / Math.Sqrt(Rank)));
                break;
            case LoraInit.Pissa:
            case LoraInit.PissaRandomized:
            case LoraInit.Olora:
                if (Module.Base.StoredWeight is { } stored)
                    throw new InvalidOperationException(
                        $"{Module.Path}: {Options.Init} initialisation moves part of the base weight into the adapter, but the base is kept as {stored.Format}; load it in float32 (--quantize f32)");
                WeightInitialization.Initialize(this, Module.Base.Weight.Value.View(
                    (long)Module.OutputOffset * inFeatures, new Shape(Module.OutFeatures, inFeatures)), _seed);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(Options), Options.Init, "unknown LoRA initialisation");
        }
        Dora?.Initialize();
    }

    /// <summary>
    /// True when the base layer may fold this delta into a per-pass effective weight W + s·BA instead of adding
    /// s·(x Aᵀ) Bᵀ to its output: plain LoRA (no DoRA) with no dropout in use.
    /// </summary>
    internal bool Foldable => Dora is null && (_dropped is null || !_adapter.Training);

    /// <summary>weight rows of this module's slice += s·B·A, in the base layer's effective weight [OC, C].</summary>
    internal void FoldInto(Tensor weight)
    {
        int inFeatures = Module.InFeatures;
        Backend.Gemm(Transpose.No, Transpose.No, Module.OutFeatures, inFeatures, Rank, Scale, B.Value, 0, Rank, A.Value, 0, inFeatures,
            1f, weight, (long)Module.OutputOffset * inFeatures, inFeatures);
    }

    /// <summary>The forward pass of a folded delta: only h = x Aᵀ, which backward's dB needs (the output came from the effective weight).</summary>
    internal void ForwardFolded(Tensor input)
    {
        var (batch, time) = (input.Shape[0], input.Shape[1]);
        _scratch.CheckSize(batch, time, nameof(input), input);
        Backend.MatMul(_h.For(batch, time), input, A.Value, transB: Transpose.Yes);
    }

    /// <summary>
    /// Adds the adapter's contribution into the output slice. On entry the slice holds x Wᵀ (and the deltas of
    /// adapters applied before this one), without the bias.
    /// </summary>
    internal void Forward(Tensor output, Tensor input)
    {
        var (batch, time) = (input.Shape[0], input.Shape[1]);
        _scratch.CheckSize(batch, time, nameof(input), input);
        Tensor x = Dropout(input, batch, time), h = _h.For(batch, time);
        // h [B, T, R] = dropout(x) · Aᵀ.
        Backend.MatMul(h, x, A.Value, transB: Transpose.Yes);
        Dora?.Refresh();
        // output[:, slice] += s · h · Bᵀ.
        int m = batch * time, ld = Module.Base.OutFeatures;
        Backend.Gemm(Transpose.No, Transpose.Yes, m, Module.OutFeatures, Rank, Scale, h, 0, Rank, B.Value, 0, Rank, 1f, output, Module.OutputOffset, ld);
        Dora?.Forward(output, batch, time);
    }

    /// <summary>
    /// Accumulates dA, dB (and DoRA's dm) and dInput's share through the adapter; returns the output gradient the base
    /// layer's own backward should use (dOutput itself, or DoRA's rescaled copy).
    /// </summary>
    internal Tensor Backward(Tensor? dInput, Tensor dOutput, Tensor input)
    {
        var (batch, time) = (input.Shape[0], input.Shape[1]);
        _scratch.CheckSize(batch, time, nameof(input), input);
        Tensor dy = Dora?.Backward(dOutput, batch, time) ?? dOutput;
        Tensor x = _dropped is not null && _adapter.Training ? _dropped.For(batch, time) : input;
        Tensor dh = RankGradients(dy, batch, time);
        // dA [R, in] += dhᵀ · dropout(x), and (without dropout) dInput += dh · A beside it.
        var dA = new GemmProblem(A.Gradient!, dh, x, Rank, Module.InFeatures, batch * time, Transpose.Yes, beta: 1f);
        if (dInput is not null && x == input)
        {
            _pair[0] = dA;
            _pair[1] = new GemmProblem(dInput, dh, A.Value, batch * time, Module.InFeatures, Rank, beta: 1f);
            Backend.GemmGrouped(_pair);
        }
        else Backend.Gemm(dA);
        _pair.AsSpan().Clear(); // no tensor kept alive past the call
        if (dInput is not null && x != input)
        {
            // The dropped input is spent: its buffer takes d(dropout(x)) = dh · A, then the mask routes it to dInput.
            Backend.MatMul(x, dh, A.Value);
            Backend.DropoutBackward(dInput, x, Options.Dropout, _maskSeed, _maskFirst);
        }
        return dy;
    }

    /// <summary>
    /// The backward pass of a folded forward (plain LoRA, no dropout: see <see cref="Foldable"/>): dB and dh now, as in
    /// <see cref="Backward"/>; dA += dhᵀ · input is returned for the base layer to run grouped with its dInput product,
    /// which through the effective weight W + s·BA already carries this adapter's dh · A.
    /// </summary>
    internal GemmProblem BackwardFolded(Tensor dOutput, Tensor input)
    {
        var (batch, time) = (input.Shape[0], input.Shape[1]);
        _scratch.CheckSize(batch, time, nameof(input), input);
        Tensor dh = RankGradients(dOutput, batch, time);
        return new GemmProblem(A.Gradient!, dh, input, Rank, Module.InFeatures, batch * time, Transpose.Yes, beta: 1f);
    }

    /// <summary>
    /// dB [out, R] += s · dyᵀ · h and dh [B·T, R] = s · dy · B, independent: one grouped call. dy is the slice of the
    /// layer's output gradient (ld = OC), or DoRA's rescaled copy, which has the same layout (the whole layer's columns).
    /// Returns dh.
    /// </summary>
    private Tensor RankGradients(Tensor dy, int batch, int time)
    {
        Tensor h = _h.For(batch, time), dh = _dh.For(batch, time);
        int m = batch * time, outFeatures = Module.OutFeatures, ldy = Module.Base.OutFeatures;
        long offset = Module.OutputOffset;
        _pair[0] = new GemmProblem
        {
            TransA = Transpose.Yes, TransB = Transpose.No, M = outFeatures, N = Rank, K = m, Alpha = Scale, Beta = 1f,
            A = dy, OffsetA = offset, Lda = ldy, B = h, Ldb = Rank, C = B.Gradient!, Ldc = Rank,
        };
        _pair[1] = new GemmProblem
        {
            TransA = Transpose.No, TransB = Transpose.No, M = m, N = Rank, K = outFeatures, Alpha = Scale, Beta = 0f,
            A = dy, OffsetA = offset, Lda = ldy, B = B.Value, Ldb = Rank, C = dh, Ldc = Rank,
        };
        Backend.GemmGrouped(_pair);
        _pair.AsSpan().Clear(); // no tensor kept alive past the call
        return dh;
    }

    /// <summary>
    /// Folds the delta into <paramref name="weight"/>, the base weight's rows of this slice (or a copy of them):
    /// W += s·BA, or DoRA's W ← (m/‖W + s·BA‖) ⊙ (W + s·BA).
    /// </summary>
    internal void MergeInto(Tensor weight)
    {
        if (Dora is not null) Dora.Merge(weight);
        else AddDelta(weight, 1f);
    }

    /// <summary>Reverses <see cref="MergeInto"/> on the base weight's rows.</summary>
    internal void UnmergeFrom(Tensor weight)
    {
        if (Dora is not null) Dora.Unmerge(weight);
        else AddDelta(weight, -1f);
    }

    /// <summary>weight [out, in] += sign · s · B · A.</summary>
    internal void AddDelta(Tensor weight, float sign)
    {
        int inFeatures = Module.InFeatures;
        Backend.Gemm(Transpose.No, Transpose.No, Module.OutFeatures, inFeatures, Rank, sign * Scale, B.Value, 0, Rank, A.Value, 0, inFeatures,
            1f, weight, 0, inFeatures);
    }

    /// <summary>dropout(input) while training with p &gt; 0 (a fresh mask per pass, kept for backward), else input.</summary>
    private Tensor Dropout(Tensor input, int batch, int time)
    {
        if (_dropped is null || !_adapter.Training) return input;
        _maskSeed = CounterRandom.Mix64(_seed + ++_step);
        _maskFirst = (ulong)_adapter.BatchFirstRow * (ulong)time * (ulong)Module.InFeatures;
        Tensor dropped = _dropped.For(batch, time);
        Backend.DropoutForward(dropped, input, Options.Dropout, _maskSeed, _maskFirst);
        return dropped;
    }

    /// <inheritdoc/>
    public override string ToString() => $"{AdapterName} on {Module.Path}: R = {Rank}, s = {Scale}{(Dora is null ? "" : ", DoRA")}";
}

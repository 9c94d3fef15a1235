using LoraRuntime.Layers.Adapters;
using LoraRuntime.Layers.Inference;

namespace LoraRuntime.Layers;

/// <summary>
/// y = x Wᵀ + b with W [OC, C] and b [OC]. Frozen when its <see cref="ParameterSet"/> is reserved without
/// gradients: then backward computes dx only and W, b are never written. A layer named in its set's
/// <see cref="ParameterSet.FactoredRanks"/> is factored: it holds W ≈ U·V as two rank-K matrices (a compressed model)
/// instead of W. The layer computes the base product (<see cref="BaseForward"/>, <see cref="BaseBackward"/>); LoRA
/// modules (<see cref="LoraLinear"/>) point at the layer they adapt, or at a slice of its output rows, and register
/// there, and how their deltas join the product — not at all, unmerged, folded into the weight — is a
/// <see cref="LinearPass"/> chosen once per forward pass. Serving steps run <see cref="Infer"/> against a packed
/// snapshot of the weight with the adapters folded in.
/// </summary>
internal sealed class Linear
{
    private readonly List<LoraLinear> _adapters = [];
    private readonly Parameter? _weight;
    private readonly QuantizedMatrix? _stored; // a frozen weight kept in its stored format (F16, BF16, Q8_0, Q4_0, NF4)
    private readonly LinearFactors? _factors;
    private readonly GemmProblem[] _gradients = new GemmProblem[2]; // dInput and dW, run as one grouped call
    private readonly BasePass _basePass;
    private DeltaPass? _deltaPass;
    private FoldedPass? _foldedPass;
    private LinearPass? _pass; // the last forward pass's, which its backward runs
    private PackedMatrix? _packed; // the inference snapshot: Wᵀ [C, OC] with the applied adapters folded in; or a factored layer's Vᵀ [C, K′]
    private PackedMatrix? _packedU; // a factored layer's Uᵀ [K′, OC]
    private int _packedRank; // K′ = K + the applied adapters' ranks, for a factored layer

    /// <summary>
    /// Declares W [<paramref name="outFeatures"/>, <paramref name="inFeatures"/>] and, optionally, b in <paramref name="parameters"/>;
    /// or, when the set's <see cref="ParameterSet.FactoredRanks"/> names this layer, U [OC, K] and V [K, C], whose
    /// intermediate [B, T, K] is declared in <paramref name="activations"/> (required then).
    /// </summary>
    public Linear(ParameterSet parameters, string name, int inFeatures, int outFeatures, bool bias = true, Activations? activations = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        Guard.Positive(inFeatures, nameof(inFeatures));
        Guard.Positive(outFeatures, nameof(outFeatures));
        Name = name;
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Owner = parameters;
        if (parameters.FactoredRanks.TryGetValue(name, out int rank))
        {
            if (activations is null)
                throw new ArgumentException($"activations: {name} is factored (rank {rank}) and needs activations for its [B, T, K] intermediate", nameof(activations));
            _factors = new LinearFactors(parameters, activations, name, inFeatures, outFeatures, rank);
        }
        else if (parameters.FormatOf(name + ".weight", inFeatures) is var format && format != WeightFormat.F32)
            _stored = parameters.AddStored(name + ".weight", format, outFeatures, inFeatures);
        else _weight = parameters.Add(name + ".weight", outFeatures, inFeatures);
        Bias = bias ? parameters.Add(name + ".bias", outFeatures) : null;
        _basePass = new BasePass(this);
    }

    /// <summary>The module path ("blocks.0.mlp.fc").</summary>
    public string Name { get; }

    /// <summary>The layer's position among its model's projections in forward order (set by the model; −1 outside one).</summary>
    public int Index { get; internal set; } = -1;

    /// <summary>C, the input width.</summary>
    public int InFeatures { get; }

    /// <summary>OC, the output width.</summary>
    public int OutFeatures { get; }

    /// <summary>W [OC, C] in float32; a factored layer or a stored weight has none (see <see cref="IsFactored"/>, <see cref="StoredWeight"/>).</summary>
    public Parameter Weight => _weight ?? throw new InvalidOperationException(_stored is not null
        ? $"{Name} keeps its weight as {_stored.Format} (a frozen low-precision base): it has no float32 weight; load the model in float32 to change it"
        : $"{Name} is factored into U [{OutFeatures}, {FactoredRank}] · V [{FactoredRank}, {InFeatures}] (a compressed model): it has no dense weight");

    /// <summary>W [OC, C] kept in its stored format, frozen (null for a float32 or factored layer).</summary>
    public QuantizedMatrix? StoredWeight => _stored;

    /// <summary>
    /// W′ = W + the rows' adapters, decoded: <paramref name="destination"/> [rows, C] = rows <paramref name="firstRow"/>…
    /// of the weight in float32, whichever way it is kept (a copy of the parameter, or the stored rows decoded).
    /// </summary>
    internal void DenseRows(Tensor destination, int firstRow)
    {
        if (_stored is not null) Backend.Dequantize(destination, _stored, firstRow);
        else
        {
            using var rows = Weight.Value.View((long)firstRow * InFeatures, destination.Shape);
            Backend.Copy(destination, rows);
        }
    }

    /// <summary>True when the layer holds W ≈ U·V (two rank-K factors) instead of W.</summary>
    public bool IsFactored => _factors is not null;

    /// <summary>K of a factored layer, 0 for a dense one.</summary>
    public int FactoredRank => _factors?.Rank ?? 0;

    /// <summary>U [OC, K] of a factored layer (null for a dense one).</summary>
    public Parameter? FactorU => _factors?.U;

    /// <summary>V [K, C] of a factored layer (null for a dense one).</summary>
    public Parameter? FactorV => _factors?.V;

    /// <summary>The set holding the layer's parameters.</summary>
    public ParameterSet Owner { get; }

    /// <summary>b [OC], or null without bias.</summary>
    public Parameter? Bias { get; }

    /// <summary>True when W and b receive no gradients (their set was reserved without them).</summary>
    public bool IsFrozen => !Owner.HasGradients;

    /// <summary>The LoRA modules attached to this layer, in the order their deltas are applied.</summary>
    public IReadOnlyList<LoraLinear> Adapters => _adapters;

    private Backend Backend => Owner.Backend;

    /// <summary>
    /// output [B, T, OC] = input [B, T, C] · Wᵀ, plus every applied adapter's delta, plus b: the pass is chosen here
    /// (none applied: the base alone; plain LoRA on a frozen weight over enough rows: folded; else unmerged deltas).
    /// </summary>
    public void Forward(Tensor output, Tensor input)
    {
        var (batch, time) = Guard.Sequence(input, nameof(input), InFeatures);
        Guard.Sequence(output, nameof(output), batch, time, OutFeatures, "OC");
        int rows = batch * time;
        _pass = !AnyApplied() ? _basePass
            : FoldedPass.Applies(this, rows) ? _foldedPass ??= new FoldedPass(this)
            : _deltaPass ??= new DeltaPass(this);
        _pass.Forward(output, input, rows);
    }

    /// <summary>The accumulating pass: see the overload.</summary>
    public void Backward(Tensor? dInput, Tensor dOutput, Tensor input) => Backward(dInput, dOutput, input, accumulate: true);

    /// <summary>
    /// Accumulates dInput [B, T, C] += dOutput · W′ (W′: the weight with the applied adapters; skipped when
    /// <paramref name="dInput"/> is null; stored instead, without a zeroing pass where it can, when not
    /// <paramref name="accumulate"/>), the adapters' gradients, and unless frozen dW += dOutputᵀ · input and
    /// db += Σ_rows dOutput. Runs the pass of the forward pass just before.
    /// </summary>
    public void Backward(Tensor? dInput, Tensor dOutput, Tensor input, bool accumulate)
    {
        var (batch, time) = Guard.Sequence(input, nameof(input), InFeatures);
        Guard.Sequence(dOutput, nameof(dOutput), batch, time, OutFeatures, "OC");
        if (dInput is not null) Guard.Sequence(dInput, nameof(dInput), batch, time, InFeatures);
        var pass = _pass ?? throw new InvalidOperationException($"{Name}: Backward needs the forward pass of this input just before");
        pass.Backward(dInput, dOutput, input, batch * time, accumulate);
    }

    /// <summary>
    /// The base product alone: output = input · Wᵀ, or (input · Vᵀ) · Uᵀ for a factored weight; with
    /// <paramref name="withBias"/>, + b (in the GEMM's epilogue for a dense weight).
    /// </summary>
    internal void BaseForward(Tensor output, Tensor input, bool withBias)
    {
        if (_stored is not null)
        {
            Backend.MatMulQuantized(output, input, _stored);
            if (withBias && Bias is not null) Backend.AddBias(output, output, Bias.Value);
            return;
        }
        if (_factors is null)
        {
            ProductForward(output, input, Weight.Value, withBias);
            return;
        }
        _factors.Forward(output, input, input.Shape[0], input.Shape[1]);
        if (withBias && Bias is not null) Backend.AddBias(output, output, Bias.Value);
    }

    /// <summary>output = input · <paramref name="weight"/>ᵀ [OC, C], with <paramref name="withBias"/> + b in the GEMM's epilogue.</summary>
    internal void ProductForward(Tensor output, Tensor input, Tensor weight, bool withBias)
    {
        if (withBias && Bias is not null) Backend.MatMulAddBias(output, input, weight, Bias.Value, transB: Transpose.Yes);
        else Backend.MatMul(output, input, weight, transB: Transpose.Yes);
    }

    /// <summary>
    /// The base product's gradients: dInput = β·dInput + dOutput · W (or through U and V); unless frozen,
    /// dW += dOutputᵀ · input (dU, dV for a factored weight) and db += Σ_rows dOutput.
    /// </summary>
    internal void BaseBackward(Tensor? dInput, Tensor dOutput, Tensor input, int rows, float beta)
    {
        if (_factors is not null)
        {
            _factors.Backward(dInput, dOutput, input, input.Shape[0], input.Shape[1], IsFrozen, beta);
            if (!IsFrozen && Bias is not null) Backend.BiasBackward(Bias.Gradient, dOutput);
            return;
        }
        if (_stored is not null)
        {
            if (dInput is not null) Backend.MatMulQuantized(dInput, dOutput, _stored, Transpose.No, beta);
            return;
        }
        if (IsFrozen)
        {
            if (dInput is not null) Backend.MatMul(dInput, dOutput, Weight.Value, beta: beta);
            return;
        }
        // dInput and dW are independent: one grouped call shares both out over the threads.
        int count = 0;
        if (dInput is not null)
            _gradients[count++] = new GemmProblem(dInput, dOutput, Weight.Value, rows, InFeatures, OutFeatures, beta: beta);
        _gradients[count++] = new GemmProblem(Weight.Gradient!, dOutput, input, OutFeatures, InFeatures, rows, Transpose.Yes, beta: 1f);
        Backend.GemmGrouped(_gradients.AsSpan(0, count));
        _gradients.AsSpan().Clear(); // no tensor kept alive past the call
        if (Bias is not null) Backend.BiasBackward(Bias.Gradient, dOutput);
    }

    /// <summary>
    /// The inference pass of a serving step (<see cref="InferenceStep"/>): output [N, OC] = input [N, C] · W′ᵀ + each
    /// row's served adapter delta + b, where W′ is the snapshot <see cref="PackForInference"/> took: the weight with the
    /// adapters applied then folded in (as a merge would), so that it equals <see cref="Forward"/> of those adapters. On
    /// the CPU the snapshot is the micro-kernel's panels, streamed from memory and never packed per step.
    /// </summary>
    public void Infer(InferenceStep step, RowBuffer output, RowBuffer input)
    {
        int n = step.Tokens, c = InFeatures, oc = OutFeatures;
        if (_stored is not null)
        {
            // The stored weight is the snapshot: adapters applied to the model add their deltas unmerged.
            Backend.GemmQuantized(Transpose.Yes, n, 1f, input.Block, 0, c, _stored, 0f, output.Block, 0, oc, ActivationPrecisions.ForInference(_stored.Format));
            AddAppliedDeltas(output.Rows(n), input.Rows(n));
        }
        else if (_packed is null) throw new InvalidOperationException($"{Name}: no inference snapshot; call PrepareInference on the model first");
        else if (_packedU is null) Backend.GemmPacked(n, 1f, input.Block, 0, c, _packed, 0f, output.Block, 0, oc);
        else
        {
            // h [N, K′] = x · Vᵀ, y = h · Uᵀ, with the adapters' A (scaled) and B side by side with V and U.
            int k = _packedRank;
            var h = step.Factors(k).Block;
            Backend.GemmPacked(n, 1f, input.Block, 0, c, _packed, 0f, h, 0, k);
            Backend.GemmPacked(n, 1f, h, 0, k, _packedU, 0f, output.Block, 0, oc);
        }
        step.Lora.AddDeltas(this, output.Block, oc, input.Block, c);
        if (Bias is not null)
        {
            var rows = output.Rows(n);
            Backend.AddBias(rows, rows, Bias.Value);
        }
    }

    /// <summary>
    /// Takes (or retakes) the inference snapshot: Wᵀ with every applied adapter folded in (W + s·BA, DoRA's
    /// (m/‖W + s·BA‖) ⊙ (W + s·BA)), packed for the backend's GEMM. A factored layer keeps its factors, extended by the
    /// adapters: V′ = [V; s·A₁; …] and U′ = [U, B₁, …] (each B in its slice's rows), exact and still low-rank. Call it
    /// again after the weights or the adapters change.
    /// </summary>
    internal void PackForInference()
    {
        if (_stored is not null) return; // computed against as stored; applied adapters join unmerged (see Infer)
        if (_factors is null)
        {
            var applied = AnyApplied();
            Tensor? weight = applied ? Backend.Allocate(OutFeatures, InFeatures) : null;
            try
            {
                if (weight is not null)
                {
                    Backend.Copy(weight, Weight.Value);
                    foreach (var adapter in _adapters)
                    {
                        if (adapter.Applied is not { } w) continue;
                        using var rows = weight.View((long)adapter.OutputOffset * InFeatures, new Shape(adapter.OutFeatures, InFeatures));
                        w.MergeInto(rows);
                    }
                }
                Pack(ref _packed, weight ?? Weight.Value);
            }
            finally
            {
                weight?.Dispose();
            }
            return;
        }
        int k = _factors.Rank;
        foreach (var adapter in _adapters)
            if (adapter.Applied is { } w) k += w.Rank;
        using var v = Backend.Allocate(k, InFeatures);
        using var u = Backend.Zeros(DType.F32, new Shape(OutFeatures, k));
        int rank = _factors.Rank;
        Backend.Copy(v.View(0, _factors.V.Shape), _factors.V.Value);
        Backend.CopyRows(u, 0, k, _factors.U.Value, 0, rank, OutFeatures, rank);
        foreach (var adapter in _adapters)
        {
            if (adapter.Applied is not { } w) continue;
            using var a = v.View((long)rank * InFeatures, new Shape(w.Rank, InFeatures));
            Backend.Scale(a, w.A.Value, w.Scale);
            Backend.CopyRows(u, (long)adapter.OutputOffset * k + rank, k, w.B.Value, 0, w.Rank, adapter.OutFeatures, w.Rank);
            rank += w.Rank;
        }
        if (_packedRank != k)
        {
            _packed?.Dispose();
            _packedU?.Dispose();
            (_packed, _packedU) = (null, null);
        }
        _packedRank = k;
        Pack(ref _packed, v);
        Pack(ref _packedU, u);
    }

    /// <summary>Each applied adapter's delta on a serving step's rows, unmerged (over a stored weight, which is never rewritten).</summary>
    private void AddAppliedDeltas(Tensor output, Tensor input)
    {
        if (!AnyApplied()) return;
        // The adapters' passes take [1, N, C] sequences: views of the step's row buffers, made once for each (they are
        // kept per row count), so a warm step allocates nothing.
        if (!ReferenceEquals(input, _appliedInput) || !ReferenceEquals(output, _appliedOutput))
        {
            _appliedX = input.View(0, new Shape(1, input.Shape[0], InFeatures));
            _appliedY = output.View(0, new Shape(1, output.Shape[0], OutFeatures));
            (_appliedInput, _appliedOutput) = (input, output);
        }
        for (int i = 0; i < _adapters.Count; i++) _adapters[i].Applied?.Forward(_appliedY!, _appliedX!);
    }

    private Tensor? _appliedInput, _appliedOutput, _appliedX, _appliedY;

    /// <summary>Packs Wᵀ of <paramref name="weight"/> [rows, cols] into <paramref name="packed"/> (made at the first call).</summary>
    private void Pack(ref PackedMatrix? packed, Tensor weight)
    {
        if (packed is null) packed = Backend.PackMatrix(weight, Transpose.Yes);
        else Backend.Repack(packed, weight, Transpose.Yes);
    }

    /// <summary>Returns the inference snapshot to the pool.</summary>
    internal void ReleaseInference()
    {
        _packed?.Dispose();
        _packedU?.Dispose();
        (_packed, _packedU, _packedRank) = (null, null, 0);
    }

    /// <summary>Bytes of the inference snapshot.</summary>
    internal long InferenceBytes => (_packed?.Bytes ?? 0) + (_packedU?.Bytes ?? 0);

    /// <summary>True when an attached adapter's delta applies this pass (a loop: no enumerator on the hot path).</summary>
    private bool AnyApplied()
    {
        foreach (var adapter in _adapters)
            if (adapter.Applied is not null) return true;
        return false;
    }

    /// <summary>True when the last forward pass ran against the folded effective weight (see <see cref="FoldedPass"/>).</summary>
    internal bool LastForwardFolded => _pass is FoldedPass;

    /// <summary>Registers a LoRA module; called by <see cref="LoraLinear"/>'s constructor.</summary>
    internal void Attach(LoraLinear adapter) => _adapters.Add(adapter);

    /// <summary>Unregisters a LoRA module that never received an adapter.</summary>
    internal void Detach(LoraLinear adapter) => _adapters.Remove(adapter);

    /// <inheritdoc/>
    public override string ToString() =>
        $"Linear {Name} [{OutFeatures}, {InFeatures}]{(IsFactored ? $" (factored, K = {FactoredRank})" : _stored is not null ? $" ({_stored.Format})" : "")}";
}

using LoraRuntime.Layers.Inference;

namespace LoraRuntime.Layers;

/// <summary>
/// A pre-norm transformer block: r = x + attn(ln1(x)); output = r + mlp(ln2(r)), its parts as the configuration says
/// (LayerNorm or RMSNorm; GPT-2's or Llama's MLP; multi-head or grouped-query attention, learned or rotary positions).
/// Names its linear projections for LoRA: "{name}.attn.qkv" (and its slices q, k, v), ".attn.o", and the MLP's
/// (".mlp.fc", ".mlp.proj"; or ".mlp.gate_up" with its slices gate and up, and ".mlp.down"). PEFT's "all-linear" takes
/// the whole projections of a GPT-2-style block and q, k, v, o, gate, up, down of a Llama-family one, as each
/// architecture's checkpoints name their modules.
/// </summary>
internal sealed class TransformerBlock
{
    private readonly Activations _activations;
    private readonly ActivationBuffer _ln1, _attn, _residual, _ln2, _mlp;
    private readonly ActivationBuffer _dLn1, _dResidual, _dLn2;

    /// <summary>
    /// Declares block <paramref name="layer"/> of <paramref name="config"/>'s parameters and activations under
    /// <paramref name="name"/> ("blocks.0"); <paramref name="rotary"/> is the model's tables when its positions are rotary.
    /// </summary>
    public TransformerBlock(ParameterSet parameters, Activations activations, string name, GptConfig config, int layer = 0, RotaryTables? rotary = null)
    {
        ArgumentNullException.ThrowIfNull(activations);
        ArgumentNullException.ThrowIfNull(config);
        _activations = activations;
        Name = name;
        int channels = config.Channels;
        Channels = channels;
        Ln1 = INorm.Create(config.Norm, parameters, activations, name + ".ln1", channels, config.LayerNormEpsilon);
        Attention = new CausalSelfAttention(parameters, activations, name + ".attn", channels, config.Heads, layer, config.KvHeads, config.HeadDim,
            config.QkvBias, config.OutputBias, rotary, config.QkNorm ? config.LayerNormEpsilon : null);
        Ln2 = INorm.Create(config.Norm, parameters, activations, name + ".ln2", channels, config.LayerNormEpsilon);
        Mlp = IFeedForward.Create(config, parameters, activations, name + ".mlp");
        Func<int, int, Shape> rows = (b, t) => new Shape(b, t, channels);
        _ln1 = activations.Add(name + ".ln1.out", rows);
        // The branches' outputs are spent at the residual sums, inside the forward pass: one pair serves every block.
        _attn = activations.AddSharedScratch("block.attn.out", rows);
        _residual = activations.Add(name + ".residual", rows);
        _ln2 = activations.Add(name + ".ln2.out", rows);
        _mlp = activations.AddSharedScratch("block.mlp.out", rows);
        // Written before read, and only inside this block's backward pass: one set serves every block.
        _dLn1 = activations.AddSharedGradient("block.ln1.dout", rows);
        _dResidual = activations.AddSharedGradient("block.residual.dout", rows);
        _dLn2 = activations.AddSharedGradient("block.ln2.dout", rows);
    }

    /// <summary>The module path.</summary>
    public string Name { get; }

    /// <summary>C.</summary>
    public int Channels { get; }

    /// <summary>The first norm (before attention).</summary>
    public INorm Ln1 { get; }

    /// <summary>The attention.</summary>
    public CausalSelfAttention Attention { get; }

    /// <summary>The second norm (before the MLP).</summary>
    public INorm Ln2 { get; }

    /// <summary>The feed-forward block.</summary>
    public IFeedForward Mlp { get; }

    /// <summary>The block's projections in forward order: qkv, o, then the MLP's.</summary>
    public IEnumerable<Linear> Linears => [Attention.Qkv, Attention.Out, .. Mlp.Linears];

    /// <summary>The projections that write back into the residual stream (GPT-2 scales their initialisation by 1/√(2L)).</summary>
    public IEnumerable<Linear> ResidualProjections => [Attention.Out, Mlp.Linears[^1]];

    /// <summary>The linear projections LoRA can target, by module path.</summary>
    public IEnumerable<LinearTarget> LinearTargets
    {
        get
        {
            var qkv = Attention.Qkv;
            int q = Attention.QueryWidth, kv = Attention.KeyValueWidth;
            // "all-linear" follows the module structure of the architecture's checkpoints: GPT-2's fused c_attn, Llama's q, k, v.
            bool separate = Mlp is GatedMlp;
            yield return new LinearTarget(qkv.Name, qkv, 0, qkv.OutFeatures, !separate);
            yield return new LinearTarget(Name + ".attn.q", qkv, 0, q, separate);
            yield return new LinearTarget(Name + ".attn.k", qkv, q, kv, separate);
            yield return new LinearTarget(Name + ".attn.v", qkv, q + kv, kv, separate);
            yield return new LinearTarget(Attention.Out.Name, Attention.Out);
            foreach (var target in Mlp.LinearTargets) yield return target;
        }
    }

    /// <summary>Norms to w = 1 (b = 0); the linear layers are left to the caller (see <see cref="TransformerStack"/>).</summary>
    internal void InitializeLayerNorms()
    {
        Ln1.InitializeDefaults();
        Ln2.InitializeDefaults();
        foreach (var norm in new[] { Attention.QNorm, Attention.KNorm })
            if (norm is not null) norm.Owner.Backend.Fill(norm.Value, 1f);
    }

    /// <summary>output [B, T, C] = the block applied to input [B, T, C]; output shares no memory with input.</summary>
    public void Forward(Tensor output, Tensor input)
    {
        var (batch, time) = Guard.Input(_activations, input, nameof(input), Channels);
        Guard.Sequence(output, nameof(output), batch, time, Channels);
        var backend = Ln1.Weight.Owner.Backend;
        Tensor ln1 = _ln1.For(batch, time), attn = _attn.For(batch, time), residual = _residual.For(batch, time);
        Tensor ln2 = _ln2.For(batch, time), mlp = _mlp.For(batch, time);
        Ln1.Forward(ln1, input);
        Attention.Forward(attn, ln1);
        backend.Add(residual, input, attn);
        Ln2.Forward(ln2, residual);
        Mlp.Forward(mlp, ln2);
        backend.Add(output, residual, mlp);
    }

    /// <summary>
    /// The inference pass of a serving step, with the same layers as <see cref="Forward"/>: the residual stream
    /// <paramref name="x"/> [N, C] ← x + attn(ln1(x)), then + mlp(ln2(·)), the attention over the step's KV cache.
    /// </summary>
    public void Infer(InferenceStep step, RowBuffer x)
    {
        var backend = Ln1.Weight.Owner.Backend;
        int n = step.Tokens;
        Ln1.Infer(step, step.Ln, x, n);
        Attention.Infer(step, step.Attention, step.Ln);
        backend.Add(step.Residual.Rows(n), x.Rows(n), step.Attention.Rows(n));
        Ln2.Infer(step, step.Ln, step.Residual, n);
        Mlp.Infer(step, step.Mlp, step.Ln);
        backend.Add(x.Rows(n), step.Residual.Rows(n), step.Mlp.Rows(n));
    }

    /// <summary>
    /// dInput += ∂L/∂input and the parameter gradients; needs the forward pass of this input just before. A null
    /// <paramref name="dInput"/> (nothing below needs it: the first block under frozen embeddings) skips the first
    /// LayerNorm's backward pass and the attention's input product; it needs that LayerNorm frozen.
    /// </summary>
    public void Backward(Tensor? dInput, Tensor dOutput, Tensor input)
    {
        var (batch, time) = Guard.Input(_activations, input, nameof(input), Channels);
        Guard.Sequence(dOutput, nameof(dOutput), batch, time, Channels);
        if (dInput is not null) Guard.Sequence(dInput, nameof(dInput), batch, time, Channels);
        else if (Ln1.Weight.HasGradient)
            throw new ArgumentNullException(nameof(dInput), $"{Name}: the input gradient may be skipped only with a frozen {Ln1.Weight.Name}, whose gradients it feeds");
        var backend = Ln1.Weight.Owner.Backend;
        Tensor dLn1 = _dLn1.For(batch, time), dResidual = _dResidual.For(batch, time), dLn2 = _dLn2.For(batch, time);
        // The residual passes dOutput straight through; the MLP branch adds to it.
        backend.Copy(dResidual, dOutput);
        Mlp.Backward(dLn2, dOutput, _ln2.For(batch, time), accumulate: false);
        Ln2.Backward(dResidual, dLn2, _residual.For(batch, time));
        if (dInput is null)
        {
            Attention.Backward(null, dResidual, _ln1.For(batch, time), accumulate: false);
            return;
        }
        backend.Add(dInput, dInput, dResidual);
        Attention.Backward(dLn1, dResidual, _ln1.For(batch, time), accumulate: false);
        Ln1.Backward(dInput, dLn1, input);
    }
}

namespace LoraRuntime.Layers;

/// <summary>
/// L transformer blocks applied in sequence, "blocks.0" … "blocks.{L−1}": the body of a GPT without embeddings or
/// head, and a host that adapters attach to by target names.
/// </summary>
internal sealed class TransformerStack : ILinearHost
{
    private readonly TransformerBlock[] _blocks;
    private readonly ActivationBuffer[] _outputs, _dOutputs;

    /// <summary>
    /// Declares <paramref name="config"/>'s L blocks; <paramref name="rotary"/> is the model's tables when its positions
    /// are rotary.
    /// </summary>
    public TransformerStack(ParameterSet parameters, Activations activations, GptConfig config, RotaryTables? rotary = null)
    {
        ArgumentNullException.ThrowIfNull(activations);
        ArgumentNullException.ThrowIfNull(config);
        int layers = config.Layers, channels = config.Channels;
        Guard.Positive(layers, nameof(layers));
        Activations = activations;
        Channels = channels;
        _blocks = new TransformerBlock[layers];
        _outputs = new ActivationBuffer[layers - 1];
        _dOutputs = new ActivationBuffer[layers - 1];
        Func<int, int, Shape> rows = (b, t) => new Shape(b, t, channels);
        for (int l = 0; l < layers; l++)
        {
            _blocks[l] = new TransformerBlock(parameters, activations, $"blocks.{l}", config, l, rotary);
            if (l == layers - 1) continue;
            _outputs[l] = activations.Add($"blocks.{l}.out", rows);
            // Block l's output gradient lives from block l+1's backward pass to block l's: two buffers in turn serve them all.
            _dOutputs[l] = activations.AddSharedGradient($"blocks.dout.{l % 2}", rows);
        }
    }

    /// <inheritdoc/>
    public Activations Activations { get; }

    /// <summary>C.</summary>
    public int Channels { get; }

    /// <summary>The blocks, first to last.</summary>
    public IReadOnlyList<TransformerBlock> Blocks => _blocks;

    /// <inheritdoc/>
    public IEnumerable<LinearTarget> LinearTargets => _blocks.SelectMany(b => b.LinearTargets);

    /// <summary>
    /// GPT-2's initialisation: linear weights N(0, 0.02²) (with <paramref name="scaleResidual"/>, the projections back
    /// into the residual stream scaled by 1/√(2L) as GPT-2 does; without, all at 0.02 as nanoGPT's character recipe
    /// does), biases 0, layer norms w = 1, b = 0. Reproducible from <paramref name="seed"/>.
    /// </summary>
    public void Initialize(ulong seed, bool scaleResidual = true)
    {
        double residualStd = scaleResidual ? 0.02 / Math.Sqrt(2 * _blocks.Length) : 0.02;
        foreach (var block in _blocks)
        {
            block.InitializeLayerNorms();
            var residuals = block.ResidualProjections.ToArray();
            foreach (var linear in block.Linears)
            {
                bool residual = residuals.Contains(linear);
                string name = linear.Name + ".weight";
                var weight = CounterRandom.Normal(CounterRandom.Seed(seed, name), (long)linear.OutFeatures * linear.InFeatures, residual ? residualStd : 0.02);
                linear.Owner.WriteRows(name, 0, weight); // a float32 weight, or a stored one encoded in its format
                if (linear.Bias is not null) linear.Owner.Backend.Fill(linear.Bias.Value, 0f);
            }
        }
    }

    /// <summary>output [B, T, C] = the blocks applied to input [B, T, C].</summary>
    public void Forward(Tensor output, Tensor input)
    {
        var (batch, time) = Guard.Input(Activations, input, nameof(input), Channels);
        Tensor x = input;
        for (int l = 0; l < _blocks.Length; l++)
        {
            Tensor y = l == _blocks.Length - 1 ? output : _outputs[l].For(batch, time);
            _blocks[l].Forward(y, x);
            x = y;
        }
    }

    /// <summary>
    /// dInput += ∂L/∂input and every trained parameter's gradient; needs the forward pass of this input just before.
    /// With a null <paramref name="dInput"/> the first block computes no input gradient (see <see cref="TransformerBlock.Backward"/>).
    /// </summary>
    public void Backward(Tensor? dInput, Tensor dOutput, Tensor input)
    {
        var (batch, time) = Guard.Input(Activations, input, nameof(input), Channels);
        var backend = Activations.Backend;
        Tensor dy = dOutput;
        for (int l = _blocks.Length - 1; l >= 0; l--)
        {
            Tensor x = l == 0 ? input : _outputs[l - 1].For(batch, time);
            Tensor? dx = l == 0 ? dInput : _dOutputs[l - 1].For(batch, time);
            if (l > 0) backend.Fill(dx!, 0f);
            _blocks[l].Backward(dx, dy, x);
            dy = dx!; // null only after the first block, the last one run
        }
    }
}

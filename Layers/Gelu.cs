namespace LoraRuntime.Layers;

/// <summary>GELU in its tanh form, element by element; no parameters.</summary>
internal sealed class Gelu
{
    /// <summary>A GELU over the last dimension of <paramref name="channels"/>.</summary>
    public Gelu(Backend backend, int channels)
    {
        ArgumentNullException.ThrowIfNull(backend);
        Guard.Positive(channels, nameof(channels));
        Backend = backend;
        Channels = channels;
    }

    /// <summary>The backend it runs on.</summary>
    public Backend Backend { get; }

    /// <summary>The width of its inputs.</summary>
    public int Channels { get; }

    /// <summary>output [B, T, C] = GELU(input [B, T, C]); output may be input itself.</summary>
    public void Forward(Tensor output, Tensor input)
    {
        var (batch, time) = Guard.Sequence(input, nameof(input), Channels);
        Guard.Sequence(output, nameof(output), batch, time, Channels);
        Backend.GeluForward(output, input);
    }

    /// <summary>The accumulating pass: see the overload.</summary>
    public void Backward(Tensor dInput, Tensor dOutput, Tensor input) => Backward(dInput, dOutput, input, accumulate: true);

    /// <summary>dInput += GELU′(input) ⊙ dOutput.</summary>
    public void Backward(Tensor dInput, Tensor dOutput, Tensor input, bool accumulate)
    {
        var (batch, time) = Guard.Sequence(input, nameof(input), Channels);
        Guard.Sequence(dOutput, nameof(dOutput), batch, time, Channels);
        Guard.Sequence(dInput, nameof(dInput), batch, time, Channels);
        Backend.GeluBackward(dInput, input, dOutput, accumulate);
    }
}

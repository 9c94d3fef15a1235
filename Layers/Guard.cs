namespace LoraRuntime.Layers;

/// <summary>
/// Argument checks at the layers' boundary, with messages that name the argument, the expected shape in the
/// symbols B, T, C and what was given. Messages are built only on failure; passing checks allocate nothing.
/// </summary>
internal static class Guard
{
    /// <summary>A [B, T, <paramref name="channels"/>] tensor; returns (B, T).</summary>
    public static (int Batch, int Time) Sequence(Tensor? tensor, string name, int channels, string what = "C")
    {
        ArgumentNullException.ThrowIfNull(tensor, name);
        if (tensor.Shape.Rank != 3 || tensor.Shape[2] != channels)
            throw new ArgumentException($"{name}: expected [B, T, {what} = {channels}]; got {name} {tensor.Shape}", name);
        return (tensor.Shape[0], tensor.Shape[1]);
    }

    /// <summary>A [<paramref name="batch"/>, <paramref name="time"/>, <paramref name="channels"/>] tensor.</summary>
    public static void Sequence(Tensor? tensor, string name, int batch, int time, int channels, string what = "C")
    {
        ArgumentNullException.ThrowIfNull(tensor, name);
        if (tensor.Shape.Rank != 3 || tensor.Shape[0] != batch || tensor.Shape[1] != time || tensor.Shape[2] != channels)
            throw new ArgumentException(
                $"{name}: expected [B, T, {what}] = [{batch}, {time}, {channels}] to match the input; got {name} {tensor.Shape}", name);
    }

    /// <summary>(B, T) of a [B, T, C] input, checked against the reserved maxima.</summary>
    public static (int Batch, int Time) Input(Activations activations, Tensor? input, string name, int channels, string what = "C")
    {
        var (batch, time) = Sequence(input, name, channels, what);
        activations.CheckSize(batch, time, name, input!);
        return (batch, time);
    }

    /// <summary>A strictly positive size.</summary>
    public static void Positive(int value, string name)
    {
        if (value <= 0) throw new ArgumentOutOfRangeException(name, value, $"{name}: expected a value > 0; got {value}");
    }
}

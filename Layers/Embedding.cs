namespace LoraRuntime.Layers;

/// <summary>A lookup table: output [B, T, C] = table[ids [B, T]] with table [V, C].</summary>
internal sealed class Embedding
{
    /// <summary>Declares the table [<paramref name="vocabulary"/>, <paramref name="channels"/>] in <paramref name="parameters"/>.</summary>
    public Embedding(ParameterSet parameters, string name, int vocabulary, int channels)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        Guard.Positive(vocabulary, nameof(vocabulary));
        Guard.Positive(channels, nameof(channels));
        Name = name;
        Vocabulary = vocabulary;
        Channels = channels;
        Table = parameters.Add(name + ".weight", vocabulary, channels);
    }

    /// <summary>The module path.</summary>
    public string Name { get; }

    /// <summary>V, the number of rows.</summary>
    public int Vocabulary { get; }

    /// <summary>C, the row width.</summary>
    public int Channels { get; }

    /// <summary>The table [V, C].</summary>
    public Parameter Table { get; }

    /// <summary>output [B, T, C] = table[ids] for int32 ids [B, T], each in [0, V).</summary>
    public void Forward(Tensor output, Tensor ids)
    {
        var (batch, time) = Ids(ids);
        Guard.Sequence(output, nameof(output), batch, time, Channels);
        Table.Owner.Backend.EmbeddingForward(output, ids, Table.Value);
    }

    /// <summary>dTable[ids[b, t]] += dOutput[b, t] (repeated ids accumulate); nothing when the table is frozen.</summary>
    public void Backward(Tensor dOutput, Tensor ids)
    {
        var (batch, time) = Ids(ids);
        Guard.Sequence(dOutput, nameof(dOutput), batch, time, Channels);
        if (Table.HasGradient) Table.Owner.Backend.EmbeddingBackward(Table.Gradient, dOutput, ids);
    }

    private static (int Batch, int Time) Ids(Tensor ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        if (ids.Shape.Rank != 2 || ids.DType != DType.I32)
            throw new ArgumentException($"ids: expected int32 ids [B, T]; got {ids}", nameof(ids));
        return (ids.Shape[0], ids.Shape[1]);
    }
}

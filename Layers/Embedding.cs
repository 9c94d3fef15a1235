namespace LoraRuntime.Layers;

/// <summary>A lookup table: output [B, T, C] = table[ids [B, T]] with table [V, C].</summary>
internal sealed class Embedding
{
    private readonly Parameter? _table;

    /// <summary>
    /// Declares the table [<paramref name="vocabulary"/>, <paramref name="channels"/>] in <paramref name="parameters"/>;
    /// a <paramref name="storable"/> table (the token embedding) takes the format the set's storage gives it.
    /// </summary>
    public Embedding(ParameterSet parameters, string name, int vocabulary, int channels, bool storable = false)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        Guard.Positive(vocabulary, nameof(vocabulary));
        Guard.Positive(channels, nameof(channels));
        Name = name;
        Vocabulary = vocabulary;
        Channels = channels;
        if (storable && parameters.FormatOf(name + ".weight", channels) is var format && format != WeightFormat.F32)
            Stored = parameters.AddStored(name + ".weight", format, vocabulary, channels);
        else _table = parameters.Add(name + ".weight", vocabulary, channels);
    }

    /// <summary>The module path.</summary>
    public string Name { get; }

    /// <summary>V, the number of rows.</summary>
    public int Vocabulary { get; }

    /// <summary>C, the row width.</summary>
    public int Channels { get; }

    /// <summary>The table [V, C] in float32 (a stored table has none: see <see cref="Stored"/>).</summary>
    public Parameter Table => _table ?? throw new InvalidOperationException(
        $"{Name} keeps its table as {Stored!.Format} (a frozen low-precision base): it has no float32 table");

    /// <summary>The table kept in its stored format, frozen (null for a float32 table).</summary>
    public QuantizedMatrix? Stored { get; }

    /// <summary>True when the table is trained (a float32 table with gradients).</summary>
    public bool HasGradient => _table?.HasGradient == true;

    /// <summary>output [B, T, C] = table[ids] for int32 ids [B, T], each in [0, V).</summary>
    public void Forward(Tensor output, Tensor ids)
    {
        var (batch, time) = Ids(ids);
        Guard.Sequence(output, nameof(output), batch, time, Channels);
        Lookup(output, ids);
    }

    /// <summary>output [N, C] = table[ids [N]]: the serving step's lookup, any shapes of N rows and N ids.</summary>
    public void Lookup(Tensor output, Tensor ids)
    {
        if (Stored is not null) Stored.Backend.EmbeddingForward(output, ids, Stored);
        else Table.Owner.Backend.EmbeddingForward(output, ids, Table.Value);
    }

    /// <summary>dTable[ids[b, t]] += dOutput[b, t] (repeated ids accumulate); nothing when the table is frozen.</summary>
    public void Backward(Tensor dOutput, Tensor ids)
    {
        var (batch, time) = Ids(ids);
        Guard.Sequence(dOutput, nameof(dOutput), batch, time, Channels);
        if (HasGradient) Table.Owner.Backend.EmbeddingBackward(Table.Gradient, dOutput, ids);
    }

    private static (int Batch, int Time) Ids(Tensor ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        if (ids.Shape.Rank != 2 || ids.DType != DType.I32)
            throw new ArgumentException($"ids: expected int32 ids [B, T]; got {ids}", nameof(ids));
        return (ids.Shape[0], ids.Shape[1]);
    }
}

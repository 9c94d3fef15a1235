namespace LoraRuntime.Layers.Inference;

/// <summary>
/// The keys and values of <see cref="Slots"/> sequences of up to <see cref="MaxSequence"/> positions for every
/// attention layer: one pool tensor [L, 2, S, T, W] (W = KVH·HS, the width of a position's keys), taken once. Layer l's
/// attention writes its keys (part 0) and values (part 1) at <see cref="Offset"/> and reads every earlier position back.
/// </summary>
internal sealed class KvCache : IDisposable
{
    public KvCache(Backend backend, int layers, int slots, int maxSequence, int width)
    {
        Guard.Positive(layers, nameof(layers));
        Guard.Positive(slots, nameof(slots));
        Guard.Positive(maxSequence, nameof(maxSequence));
        Guard.Positive(width, nameof(width));
        (Layers, Slots, MaxSequence, Width) = (layers, slots, maxSequence, width);
        Values = backend.Zeros(DType.F32, new Shape(layers * 2, slots, maxSequence, width));
    }

    /// <summary>L.</summary>
    public int Layers { get; }

    /// <summary>S, the sequences held.</summary>
    public int Slots { get; }

    /// <summary>T, the longest sequence a slot holds.</summary>
    public int MaxSequence { get; }

    /// <summary>W, the floats of one position's keys (and of its values).</summary>
    public int Width { get; }

    /// <summary>The whole cache [2L, S, T, W].</summary>
    public Tensor Values { get; }

    /// <summary>Bytes held.</summary>
    public long Bytes => Values.Length * sizeof(float);

    /// <summary>Element offset of position 0 of <paramref name="slot"/>'s keys (part 0) or values (part 1) in layer <paramref name="layer"/>.</summary>
    public long Offset(int layer, int part, int slot) => ((long)(2 * layer + part) * Slots + slot) * MaxSequence * Width;

    public void Dispose() => Values.Dispose();
}

using System.Numerics.Tensors;

namespace LoraRuntime.Cpu.Primitives;

/// <summary>output[n] = table[ids[n]], in parallel over rows of output.</summary>
internal unsafe struct EmbeddingForwardOp : IRangeOp
{
    public float* Output, Table;
    public int* Ids;
    public int Channels;

    public readonly void Run(long start, long end)
    {
        for (long n = start; n < end; n++)
            new ReadOnlySpan<float>(Table + (long)Ids[n] * Channels, Channels).CopyTo(new Span<float>(Output + n * Channels, Channels));
    }
}

/// <summary>
/// dTable[ids[n]] += dOutput[n]. Repeated ids write the same row, so tasks split the columns instead of the ids:
/// each column adds its ids in order, with no races and the same result on any number of threads.
/// </summary>
internal unsafe struct EmbeddingBackwardOp : IRangeOp
{
    public float* DTable, DOutput;
    public int* Ids;
    public long Count;
    public int Channels;

    public readonly void Run(long start, long end)
    {
        for (long n = 0; n < Count; n++)
        {
            var row = Spans.Write(DTable + (long)Ids[n] * Channels, start, end);
            TensorPrimitives.Add(row, Spans.Read(DOutput + n * Channels, start, end), row);
        }
    }
}

/// <summary>output[n] = table[ids[n]] for a stored table: each row decoded from its format.</summary>
internal unsafe struct QuantizedEmbeddingOp : IRangeOp
{
    public float* Output;
    public byte* Table;
    public long RowBytes;
    public int* Ids;
    public int Channels;
    public WeightFormat Format;

    public readonly void Run(long start, long end)
    {
        for (long n = start; n < end; n++)
            Quantization.WeightRows.Decode(Format, Table + Ids[n] * RowBytes, Output + n * Channels, Channels);
    }
}

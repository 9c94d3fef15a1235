namespace LoraRuntime;

/// <summary>
/// A frozen weight W [<see cref="Rows"/>, <see cref="Columns"/>] kept in its stored <see cref="WeightFormat"/> (F16,
/// BF16, Q8_0, Q4_0, NF4) in its backend's memory, row by row, each row a whole number of the format's blocks: the B
/// operand of <see cref="Backend.GemmQuantized"/>, which converts it to float32 inside the product (float32
/// accumulation), and the table of <see cref="Backend.EmbeddingForward(Tensor, Tensor, QuantizedMatrix)"/>. Made by
/// <see cref="Backend.CreateQuantized"/>, filled by <see cref="Backend.QuantizeRows"/> (from float32) or
/// <see cref="Backend.WriteEncodedRows"/> (blocks as a file holds them). Disposing returns the storage to the pool.
/// </summary>
public sealed class QuantizedMatrix : IDisposable
{
    internal QuantizedMatrix(Tensor storage, WeightFormat format, int rows, int columns)
    {
        Storage = storage;
        Format = format;
        Rows = rows;
        Columns = columns;
        RowBytes = format.RowBytes(columns);
    }

    /// <summary>The stored format.</summary>
    public WeightFormat Format { get; }

    /// <summary>Rows of W (a projection's output features, a table's entries).</summary>
    public int Rows { get; }

    /// <summary>Columns of W (a projection's input features, a table's width).</summary>
    public int Columns { get; }

    /// <summary>Bytes of one stored row.</summary>
    public long RowBytes { get; }

    /// <summary>Bytes of the backend's memory the matrix holds.</summary>
    public long Bytes => Storage.ByteLength;

    /// <summary>The backend holding it.</summary>
    public Backend Backend => Storage.Backend;

    /// <summary>True once disposed.</summary>
    public bool IsDisposed => Storage.IsDisposed;

    /// <summary>The rows' bytes, [Rows · RowBytes] of <see cref="DType.U8"/>.</summary>
    internal Tensor Storage { get; }

    /// <inheritdoc/>
    public override string ToString() => $"QuantizedMatrix {Format} [{Rows}, {Columns}]";

    /// <summary>Returns the storage to the pool.</summary>
    public void Dispose() => Storage.Dispose();
}

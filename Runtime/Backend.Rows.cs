namespace LoraRuntime;

// A strided row copy (cudaMemcpy2D's shape): what a KV cache needs to move the keys and values of a step's tokens
// out of the fused QKV rows into each sequence's cache rows without building views.
public abstract partial class Backend
{
    /// <summary>
    /// Copies <paramref name="rows"/> rows of <paramref name="columns"/> elements: row i is read from element
    /// <paramref name="sourceOffset"/> + i·<paramref name="sourceStride"/> of <paramref name="source"/> and written at
    /// <paramref name="destinationOffset"/> + i·<paramref name="destinationStride"/> of <paramref name="destination"/>.
    /// Both tensors have the same dtype; strides are at least <paramref name="columns"/>; the rows written must not
    /// share memory with the rows read. Everything is checked before anything is written.
    /// </summary>
    public void CopyRows(Tensor destination, long destinationOffset, int destinationStride, Tensor source, long sourceOffset, int sourceStride,
        int rows, int columns)
    {
        ArgumentNullException.ThrowIfNull(source);
        Check.Tensor(this, destination, source.DType, nameof(destination));
        Check.Tensor(this, source, destination.DType, nameof(source));
        Check.NonNegative(rows, nameof(rows));
        Check.NonNegative(columns, nameof(columns));
        if (rows == 0 || columns == 0) return;
        long destinationEnd = RowsExtent(destination, destinationOffset, destinationStride, rows, columns, nameof(destination));
        long sourceEnd = RowsExtent(source, sourceOffset, sourceStride, rows, columns, nameof(source));
        int size = source.DType.SizeInBytes();
        if (Check.Overlaps(destination.Pointer + (nint)(destinationOffset * size), (destinationEnd - destinationOffset) * size,
                source.Pointer + (nint)(sourceOffset * size), (sourceEnd - sourceOffset) * size))
            throw new ArgumentException(
                $"destination: the {rows}×{columns} rows written from offset {destinationOffset} (stride {destinationStride}) share memory with the rows read from offset {sourceOffset} (stride {sourceStride}) of source",
                nameof(destination));
        CopyRowsCore(destination, destinationOffset, destinationStride, source, sourceOffset, sourceStride, rows, columns);
    }

    /// <summary>
    /// Validated, non-empty <see cref="CopyRows"/>. This portable version copies row by row through views (it allocates
    /// two views per row); a backend overrides it with one strided copy.
    /// </summary>
    protected virtual void CopyRowsCore(Tensor destination, long destinationOffset, int destinationStride, Tensor source, long sourceOffset,
        int sourceStride, int rows, int columns)
    {
        var row = new Shape(columns);
        for (int i = 0; i < rows; i++)
        {
            using var d = destination.View(destinationOffset + (long)i * destinationStride, row);
            using var s = source.View(sourceOffset + (long)i * sourceStride, row);
            CopyCore(d, s);
        }
    }

    /// <summary>The end (exclusive) of <paramref name="rows"/> strided rows, checked against the tensor.</summary>
    private static long RowsExtent(Tensor t, long offset, int stride, int rows, int columns, string name)
    {
        if (offset < 0) throw new ArgumentOutOfRangeException(name, offset, $"{name}: the offset must be ≥ 0; got {offset}");
        if (stride < columns)
            throw new ArgumentOutOfRangeException(name, stride, $"{name}: the row stride must be ≥ columns = {columns}; got {stride}");
        long end = offset + (long)(rows - 1) * stride + columns;
        if (end > t.Length)
            throw new ArgumentException(
                $"{name}: {rows} rows of {columns} from offset {offset} with stride {stride} need {end} elements; {name} {t.Shape} has {t.Length}", name);
        return end;
    }
}

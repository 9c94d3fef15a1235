using System.Collections.Immutable;

namespace LoraRuntime.IO;

/// <summary>
/// One tensor in a safetensors file as its header describes it, after the reader has checked it: a dtype it knows,
/// non-negative dimensions whose product times the element size is exactly the byte range, and a range inside the
/// data region that no other tensor shares.
/// </summary>
public sealed class SafetensorsEntry
{
    internal SafetensorsEntry(string name, SafetensorsDType dtype, ImmutableArray<long> shape, long dataBegin, long dataEnd)
    {
        Name = name;
        DType = dtype;
        Shape = shape;
        DataBegin = dataBegin;
        DataEnd = dataEnd;
    }

    /// <summary>The tensor's name (its key in the header).</summary>
    public string Name { get; }

    /// <summary>The element type as stored in the file.</summary>
    public SafetensorsDType DType { get; }

    /// <summary>The dimensions, outermost first (row-major); empty for a scalar. Any rank, for inspection.</summary>
    public ImmutableArray<long> Shape { get; }

    /// <summary>The first byte of the tensor's data, relative to the start of the data region (<c>data_offsets[0]</c>).</summary>
    public long DataBegin { get; }

    /// <summary>One past the last byte of the tensor's data, relative to the data region (<c>data_offsets[1]</c>).</summary>
    public long DataEnd { get; }

    /// <summary>Number of bytes of data.</summary>
    public long ByteLength => DataEnd - DataBegin;

    /// <summary>Number of elements: the product of the dimensions (1 for a scalar). The reader checked it cannot overflow.</summary>
    public long ElementCount
    {
        get
        {
            long count = 1;
            foreach (long d in Shape) count *= d;
            return count;
        }
    }

    /// <summary>The shape as a tensor <see cref="LoraRuntime.Shape"/>, when the rank is at most 4 and each dimension fits an int.</summary>
    internal bool TryGetTensorShape(out Shape shape)
    {
        shape = default;
        if (Shape.Length > LoraRuntime.Shape.MaxRank) return false;
        Span<int> dims = stackalloc int[LoraRuntime.Shape.MaxRank];
        for (int i = 0; i < Shape.Length; i++)
        {
            if (Shape[i] > int.MaxValue) return false;
            dims[i] = (int)Shape[i];
        }
        shape = new Shape(dims[..Shape.Length]);
        return true;
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Name}: {DType.Name()} [{string.Join(", ", Shape)}]";
}

using System.Runtime.CompilerServices;

namespace LoraRuntime;

/// <summary>
/// A row-major tensor shape of rank 0 to 4. A value type: building or comparing shapes never allocates.
/// </summary>
public readonly struct Shape : IEquatable<Shape>
{
    /// <summary>The largest rank a tensor may have.</summary>
    public const int MaxRank = 4;

    private readonly int _d0, _d1, _d2, _d3;

    /// <summary>Number of dimensions.</summary>
    public int Rank { get; }

    /// <summary>Product of the dimensions (1 for a scalar).</summary>
    public long Length { get; }

    /// <summary>A shape from its dimensions; each must be ≥ 0 and there may be at most <see cref="MaxRank"/>.</summary>
    public Shape(params ReadOnlySpan<int> dims)
    {
        if (dims.Length > MaxRank)
            throw new ArgumentException($"a shape has at most {MaxRank} dimensions; got {dims.Length}", nameof(dims));
        long length = 1;
        for (int i = 0; i < dims.Length; i++)
        {
            if (dims[i] < 0)
                throw new ArgumentException($"dimension {i} must be ≥ 0; got {dims[i]} in {Format(dims)}", nameof(dims));
            length *= dims[i];
        }
        Rank = dims.Length;
        _d0 = dims.Length > 0 ? dims[0] : 0;
        _d1 = dims.Length > 1 ? dims[1] : 0;
        _d2 = dims.Length > 2 ? dims[2] : 0;
        _d3 = dims.Length > 3 ? dims[3] : 0;
        Length = length;
    }

    /// <summary>Dimension <paramref name="axis"/>; negative axes count from the end.</summary>
    public int this[int axis]
    {
        get
        {
            int a = axis < 0 ? axis + Rank : axis;
            if ((uint)a >= (uint)Rank)
                throw new ArgumentOutOfRangeException(nameof(axis), axis, $"axis out of range for shape {this}");
            return a switch { 0 => _d0, 1 => _d1, 2 => _d2, _ => _d3 };
        }
    }

    /// <summary>The last dimension (1 for a scalar).</summary>
    public int Last => Rank == 0 ? 1 : this[Rank - 1];

    /// <summary>Product of all dimensions but the last: the number of rows when the tensor is read as a matrix.</summary>
    public long Rows
    {
        get
        {
            long rows = 1;
            for (int i = 0; i < Rank - 1; i++) rows *= this[i];
            return rows;
        }
    }

    /// <inheritdoc/>
    public bool Equals(Shape other) =>
        Rank == other.Rank && _d0 == other._d0 && _d1 == other._d1 && _d2 == other._d2 && _d3 == other._d3;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is Shape s && Equals(s);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Rank, _d0, _d1, _d2, _d3);

    /// <summary>Shape equality.</summary>
    public static bool operator ==(Shape a, Shape b) => a.Equals(b);

    /// <summary>Shape inequality.</summary>
    public static bool operator !=(Shape a, Shape b) => !a.Equals(b);

    /// <summary>The shape as <c>[d0, d1, …]</c> (allocates; for messages only).</summary>
    public override string ToString()
    {
        Span<int> dims = stackalloc int[MaxRank];
        for (int i = 0; i < Rank; i++) dims[i] = this[i];
        return Format(dims[..Rank]);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static string Format(ReadOnlySpan<int> dims) => "[" + string.Join(", ", dims.ToArray()) + "]";
}

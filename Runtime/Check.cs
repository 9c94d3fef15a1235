namespace LoraRuntime;

/// <summary>
/// Argument validation at the public boundary. Each check throws <see cref="ArgumentException"/> naming the
/// argument, the expectation and what was given. Messages are built only on failure.
/// </summary>
internal static class Check
{
    public static void Tensor(Backend backend, Tensor? tensor, DType dtype, string name)
    {
        if (tensor is null) throw new ArgumentNullException(name);
        if (tensor.IsDisposed) throw new ObjectDisposedException(name, $"{name}: {tensor} was disposed");
        if (!ReferenceEquals(tensor.Backend, backend))
            throw new ArgumentException($"{name}: expected a tensor on {backend.Name}, got {tensor}", name);
        if (tensor.DType != dtype)
            throw new ArgumentException($"{name}: expected dtype {dtype}, got {tensor}", name);
    }

    public static void Length(long length, Tensor tensor, string name)
    {
        if (length != tensor.Length)
            throw new ArgumentException($"{name}: expected {tensor.Length} elements to match {tensor}, got {length}", name);
    }

    public static void SameLength(Tensor a, string nameA, Tensor b, string nameB)
    {
        if (a.Length != b.Length)
            throw new ArgumentException($"{nameA} and {nameB} must have the same length; got {nameA} {a.Shape} and {nameB} {b.Shape}", nameA);
    }

    public static void SameShape(Tensor a, string nameA, Tensor b, string nameB)
    {
        if (a.Shape != b.Shape)
            throw new ArgumentException($"{nameA} and {nameB} must have the same shape; got {nameA} {a.Shape} and {nameB} {b.Shape}", nameA);
    }

    public static void Positive(long value, string name)
    {
        if (value <= 0) throw new ArgumentOutOfRangeException(name, value, $"{name} must be > 0");
    }

    public static void NonNegative(long value, string name)
    {
        if (value < 0) throw new ArgumentOutOfRangeException(name, value, $"{name} must be ≥ 0");
    }

    public static void Finite(float value, string name)
    {
        if (!float.IsFinite(value)) throw new ArgumentOutOfRangeException(name, value, $"{name} must be finite");
    }

    /// <summary>True when the byte ranges [a, a+aBytes) and [b, b+bBytes) share memory.</summary>
    public static bool Overlaps(nint a, long aBytes, nint b, long bBytes) =>
        aBytes > 0 && bBytes > 0 && a < b + (nint)bBytes && b < a + (nint)aBytes;

    public static void NoOverlap(Tensor output, string outputName, Tensor input, string inputName)
    {
        if (Overlaps(output.Pointer, output.ByteLength, input.Pointer, input.ByteLength))
            throw new ArgumentException($"{outputName} {output.Shape} must not share memory with {inputName} {input.Shape}", outputName);
    }

    /// <summary>Checks each tensor as <c>Tensor</c> does (present, alive, on this backend, of this dtype); names[i] names tensors[i].</summary>
    public static void Tensors(Backend backend, DType dtype, ReadOnlySpan<Tensor> tensors, ReadOnlySpan<string> names)
    {
        for (int i = 0; i < tensors.Length; i++) Tensor(backend, tensors[i], dtype, names[i]);
    }

    /// <summary>Every tensor in <paramref name="others"/> has the shape of <paramref name="reference"/>.</summary>
    public static void SameShapes(Tensor reference, string referenceName, ReadOnlySpan<Tensor> others, ReadOnlySpan<string> names)
    {
        for (int i = 0; i < others.Length; i++) SameShape(others[i], names[i], reference, referenceName);
    }

    /// <summary>Every tensor in <paramref name="others"/> has the length of <paramref name="reference"/>.</summary>
    public static void SameLengths(Tensor reference, string referenceName, ReadOnlySpan<Tensor> others, ReadOnlySpan<string> names)
    {
        for (int i = 0; i < others.Length; i++) SameLength(others[i], names[i], reference, referenceName);
    }

    /// <summary>
    /// An element-wise output may be exactly its input (in place) or share no memory with it; a partial overlap
    /// would read elements already overwritten.
    /// </summary>
    public static void SameOrDisjoint(Tensor output, string outputName, Tensor input, string inputName)
    {
        if (output.Pointer == input.Pointer && output.ByteLength == input.ByteLength) return;
        if (Overlaps(output.Pointer, output.ByteLength, input.Pointer, input.ByteLength))
            throw new ArgumentException(
                $"{outputName} {output.Shape} must be {inputName} {input.Shape} itself (in place) or share no memory with it; got a partial overlap", outputName);
    }

    /// <summary>The first <paramref name="outputCount"/> tensors share memory with none of the others.</summary>
    public static void Disjoint(int outputCount, ReadOnlySpan<Tensor> tensors, ReadOnlySpan<string> names)
    {
        for (int i = 0; i < outputCount; i++)
            for (int j = 0; j < tensors.Length; j++)
                if (j != i) NoOverlap(tensors[i], names[i], tensors[j], names[j]);
    }

    /// <summary><paramref name="perRow"/> holds one element per row of <paramref name="matrix"/> (all dimensions but the last).</summary>
    public static void OnePerRow(Tensor perRow, string name, Tensor matrix, string matrixName)
    {
        if (perRow.Length != matrix.Shape.Rows)
            throw new ArgumentException(
                $"{name}: expected {matrix.Shape.Rows} elements, one per row of {matrixName} {matrix.Shape}; got {name} {perRow.Shape}", name);
    }

    /// <summary><paramref name="perColumn"/> holds one element per column of <paramref name="matrix"/> (its last dimension).</summary>
    public static void OnePerColumn(Tensor perColumn, string name, Tensor matrix, string matrixName)
    {
        if (perColumn.Length != matrix.Shape.Last)
            throw new ArgumentException(
                $"{name}: expected {matrix.Shape.Last} elements, one per column (last dimension) of {matrixName} {matrix.Shape}; got {name} {perColumn.Shape}", name);
    }

    /// <summary>A row-wise operation needs at least one column whenever there are rows.</summary>
    public static void HasColumns(Tensor matrix, string name)
    {
        if (matrix.Shape.Last == 0 && matrix.Shape.Rows > 0)
            throw new ArgumentException($"{name}: expected at least one column (last dimension) per row; got {name} {matrix.Shape}", name);
    }

    /// <summary>A finite value in [<paramref name="min"/>, <paramref name="max"/>), or [min, max] when <paramref name="maxInclusive"/>.</summary>
    public static void InRange(float value, float min, float max, bool maxInclusive, string name)
    {
        bool ok = float.IsFinite(value) && value >= min && (maxInclusive ? value <= max : value < max);
        if (!ok)
            throw new ArgumentOutOfRangeException(name, value,
                $"{name}: expected a finite value in [{min}, {max}{(maxInclusive ? "]" : ")")}; got {value}");
    }

    /// <summary>A finite value strictly greater than zero.</summary>
    public static void FinitePositive(float value, string name)
    {
        if (!(float.IsFinite(value) && value > 0))
            throw new ArgumentOutOfRangeException(name, value, $"{name}: expected a finite value > 0; got {value}");
    }
}

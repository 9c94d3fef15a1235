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
}

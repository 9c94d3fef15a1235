using System.Numerics;
using LoraRuntime.IO;

namespace LoraRuntime.Layers;

/// <summary>
/// Weights read from a file must be finite: a NaN or an infinity in a model or an adapter only ever turns every answer
/// into garbage (or newlines), so every loader refuses one at load, naming the file, the tensor and the element.
/// </summary>
internal static class FiniteWeights
{
    /// <summary>Throws an <see cref="InvalidDataException"/> at the first element of <paramref name="values"/> that is not finite.</summary>
    public static void Require(ReadOnlySpan<float> values, string tensor, string file)
    {
        int at = IndexOfNonFinite(values);
        if (at >= 0)
            throw new InvalidDataException(
                $"{file}: tensor '{tensor}' holds a non-finite value ({values[at]}) at element {at:N0}; the weights are corrupt (a diverged training?) and are not loaded");
    }

    /// <summary><see cref="SafetensorsReader.LoadInto"/>, then <see cref="Require"/> on what was read (copied back from a device).</summary>
    public static void LoadInto(SafetensorsReader reader, string name, Tensor destination, string file)
    {
        reader.LoadInto(name, destination);
        if (destination.Backend.IsHostMemory) Require(destination.AsSpan(), name, file);
        else Require(destination.ToArray(), name, file);
    }

    /// <summary>The index of the first NaN or infinity, or −1: x − x is 0 for every finite x and NaN otherwise.</summary>
    public static int IndexOfNonFinite(ReadOnlySpan<float> values)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
            for (; i + Vector<float>.Count <= values.Length; i += Vector<float>.Count)
            {
                var v = new Vector<float>(values[i..]);
                if (!Vector.EqualsAll(v - v, Vector<float>.Zero)) break;
            }
        for (; i < values.Length; i++)
            if (!float.IsFinite(values[i])) return i;
        return -1;
    }
}

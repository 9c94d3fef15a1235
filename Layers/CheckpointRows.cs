using LoraRuntime.IO;

namespace LoraRuntime.Layers;

/// <summary>
/// Streams a file's tensor into a model's weight a few MiB at a time, each piece checked finite and written in the
/// weight's format (float32 rows, or encoded rows of a stored weight): loading never holds a whole tensor in float32
/// beside the model, and the file pages read are dropped from the process's memory as it goes.
/// </summary>
internal static class CheckpointRows
{
    /// <summary>Floats a piece holds (4 MiB).</summary>
    private const int PieceFloats = 1 << 20;

    /// <summary>
    /// Rows [0, <paramref name="rows"/>) of <paramref name="key"/> (rows of <paramref name="width"/> elements) into rows
    /// <paramref name="firstRow"/>… of <paramref name="name"/>; <paramref name="buffer"/> is grown as needed and reused.
    /// </summary>
    public static void Load(SafetensorsReader reader, string key, ParameterSet parameters, string name, int firstRow, int rows, int width,
        ref float[] buffer)
    {
        int piece = Math.Max(1, PieceFloats / width);
        for (int r = 0; r < rows; r += piece)
        {
            int count = Math.Min(piece, rows - r), n = checked(count * width);
            if (buffer.Length < n) buffer = new float[Math.Max(n, Math.Min(PieceFloats, checked(rows * width)))];
            var values = buffer.AsSpan(0, n);
            reader.ReadFloat32(key, (long)r * width, values);
            int bad = FiniteWeights.IndexOfNonFinite(values);
            if (bad >= 0)
                throw new InvalidDataException(
                    $"{reader.Path}: tensor '{key}' holds a non-finite value ({values[bad]}) at element {(long)r * width + bad:N0}; the weights are corrupt (a diverged training?) and are not loaded");
            parameters.WriteRows(name, firstRow + r, values);
        }
    }

    /// <summary>The weight format a file's float dtype is (F32, F16, BF16), for <see cref="WeightStorage.AsStored"/>.</summary>
    public static WeightFormat FormatOf(SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.F16 => WeightFormat.F16,
        SafetensorsDType.BF16 => WeightFormat.BF16,
        _ => WeightFormat.F32,
    };
}

namespace LoraRuntime.Layers;

/// <summary>
/// The order of q and k rows within each head: Hugging Face's rotate-half (the first halves of the rotary pairs, then
/// the second halves) against llama.cpp's interleaved one (pair by pair), which its converter makes by permuting the
/// rows — row 2j + s of a head there is row s·HS/2 + j here. Rows are whole runs of bytes (encoded blocks, floats), so
/// one permutation serves weights of every format and adapters' B.
/// </summary>
internal static class RotaryRowOrder
{
    /// <summary>Rotate-half rows (<paramref name="heads"/> heads of <paramref name="headDim"/> rows) into llama.cpp's order.</summary>
    public static byte[] ToInterleaved(ReadOnlySpan<byte> rows, int heads, int headDim) => Permute(rows, heads, headDim, toInterleaved: true);

    /// <summary>llama.cpp's interleaved rows back into rotate-half order.</summary>
    public static byte[] ToRotateHalf(ReadOnlySpan<byte> rows, int heads, int headDim) => Permute(rows, heads, headDim, toInterleaved: false);

    private static byte[] Permute(ReadOnlySpan<byte> rows, int heads, int headDim, bool toInterleaved)
    {
        int rowBytes = rows.Length / (heads * headDim), half = headDim / 2;
        var result = new byte[rows.Length];
        for (int h = 0; h < heads; h++)
            for (int j = 0; j < half; j++)
                for (int s = 0; s < 2; s++)
                {
                    int rotateHalf = h * headDim + s * half + j, interleaved = h * headDim + 2 * j + s;
                    var (from, to) = toInterleaved ? (rotateHalf, interleaved) : (interleaved, rotateHalf);
                    rows.Slice(from * rowBytes, rowBytes).CopyTo(result.AsSpan(to * rowBytes, rowBytes));
                }
        return result;
    }
}

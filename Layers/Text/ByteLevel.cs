namespace LoraRuntime.Layers.Text;

/// <summary>
/// GPT-2's reversible map of the 256 byte values onto printable characters (its <c>bytes_to_unicode</c>): the bytes
/// '!'..'~', '¡'..'¬' and '®'..'ÿ' stand for themselves, the other 68 (controls, space, soft hyphen, …) for U+0100
/// onwards in byte order. BPE then works on strings with no whitespace or control characters in them.
/// </summary>
internal static class ByteLevel
{
    private static readonly char[] ByteToChar = BuildTable();
    private static readonly Dictionary<char, byte> CharToByte = Invert(ByteToChar);

    /// <summary>The character that stands for <paramref name="value"/>.</summary>
    public static char Char(byte value) => ByteToChar[value];

    /// <summary>The byte <paramref name="c"/> stands for, when it stands for one.</summary>
    public static bool TryGetByte(char c, out byte value) => CharToByte.TryGetValue(c, out value);

    /// <summary>The characters of <paramref name="bytes"/>, one per byte.</summary>
    public static string Encode(ReadOnlySpan<byte> bytes)
    {
        return string.Create(bytes.Length, bytes.ToArray(), static (chars, source) =>
        {
            for (int i = 0; i < source.Length; i++) chars[i] = ByteToChar[source[i]];
        });
    }

    private static char[] BuildTable()
    {
        var table = new char[256];
        var direct = new bool[256];
        foreach (var (first, last) in new[] { ('!', '~'), ('¡', '¬'), ('®', 'ÿ') })
            for (int b = first; b <= last; b++) (table[b], direct[b]) = ((char)b, true);
        int next = 256;
        for (int b = 0; b < 256; b++)
            if (!direct[b]) table[b] = (char)next++;
        return table;
    }

    private static Dictionary<char, byte> Invert(char[] table)
    {
        var inverse = new Dictionary<char, byte>(256);
        for (int b = 0; b < 256; b++) inverse.Add(table[b], (byte)b);
        return inverse;
    }
}

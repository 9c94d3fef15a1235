using System.Buffers;
using System.Globalization;
using System.Text;

namespace LoraRuntime.Layers.Text.Jinja;

/// <summary>
/// JavaScript's <c>toUpperCase</c> and <c>toLowerCase</c>, which the reference's upper and lower use: Unicode's full
/// case mapping. Invariant casing gives the simple mapping; this adds the mappings that change a string's length
/// (ß → SS, ligatures, Greek with iota subscript, İ → i̇) and the final sigma (Σ at a word's end → ς).
/// </summary>
internal static class JinjaCasing
{
    // Every character whose upper case is longer than one character (SpecialCasing.txt's unconditional mappings; all in the BMP).
    private static readonly (char From, string To)[] UpperExpansions =
    [
        ('\u00DF', "\u0053\u0053"), ('\u0149', "\u02BC\u004E"), ('\u01F0', "\u004A\u030C"), ('\u0390', "\u0399\u0308\u0301"), ('\u03B0', "\u03A5\u0308\u0301"),
        ('\u0587', "\u0535\u0552"), ('\u1E96', "\u0048\u0331"), ('\u1E97', "\u0054\u0308"), ('\u1E98', "\u0057\u030A"), ('\u1E99', "\u0059\u030A"),
        ('\u1E9A', "\u0041\u02BE"), ('\u1F50', "\u03A5\u0313"), ('\u1F52', "\u03A5\u0313\u0300"), ('\u1F54', "\u03A5\u0313\u0301"), ('\u1F56', "\u03A5\u0313\u0342"),
        ('\u1F80', "\u1F08\u0399"), ('\u1F81', "\u1F09\u0399"), ('\u1F82', "\u1F0A\u0399"), ('\u1F83', "\u1F0B\u0399"), ('\u1F84', "\u1F0C\u0399"),
        ('\u1F85', "\u1F0D\u0399"), ('\u1F86', "\u1F0E\u0399"), ('\u1F87', "\u1F0F\u0399"), ('\u1F88', "\u1F08\u0399"), ('\u1F89', "\u1F09\u0399"),
        ('\u1F8A', "\u1F0A\u0399"), ('\u1F8B', "\u1F0B\u0399"), ('\u1F8C', "\u1F0C\u0399"), ('\u1F8D', "\u1F0D\u0399"), ('\u1F8E', "\u1F0E\u0399"),
        ('\u1F8F', "\u1F0F\u0399"), ('\u1F90', "\u1F28\u0399"), ('\u1F91', "\u1F29\u0399"), ('\u1F92', "\u1F2A\u0399"), ('\u1F93', "\u1F2B\u0399"),
        ('\u1F94', "\u1F2C\u0399"), ('\u1F95', "\u1F2D\u0399"), ('\u1F96', "\u1F2E\u0399"), ('\u1F97', "\u1F2F\u0399"), ('\u1F98', "\u1F28\u0399"),
        ('\u1F99', "\u1F29\u0399"), ('\u1F9A', "\u1F2A\u0399"), ('\u1F9B', "\u1F2B\u0399"), ('\u1F9C', "\u1F2C\u0399"), ('\u1F9D', "\u1F2D\u0399"),
        ('\u1F9E', "\u1F2E\u0399"), ('\u1F9F', "\u1F2F\u0399"), ('\u1FA0', "\u1F68\u0399"), ('\u1FA1', "\u1F69\u0399"), ('\u1FA2', "\u1F6A\u0399"),
        ('\u1FA3', "\u1F6B\u0399"), ('\u1FA4', "\u1F6C\u0399"), ('\u1FA5', "\u1F6D\u0399"), ('\u1FA6', "\u1F6E\u0399"), ('\u1FA7', "\u1F6F\u0399"),
        ('\u1FA8', "\u1F68\u0399"), ('\u1FA9', "\u1F69\u0399"), ('\u1FAA', "\u1F6A\u0399"), ('\u1FAB', "\u1F6B\u0399"), ('\u1FAC', "\u1F6C\u0399"),
        ('\u1FAD', "\u1F6D\u0399"), ('\u1FAE', "\u1F6E\u0399"), ('\u1FAF', "\u1F6F\u0399"), ('\u1FB2', "\u1FBA\u0399"), ('\u1FB3', "\u0391\u0399"),
        ('\u1FB4', "\u0386\u0399"), ('\u1FB6', "\u0391\u0342"), ('\u1FB7', "\u0391\u0342\u0399"), ('\u1FBC', "\u0391\u0399"), ('\u1FC2', "\u1FCA\u0399"),
        ('\u1FC3', "\u0397\u0399"), ('\u1FC4', "\u0389\u0399"), ('\u1FC6', "\u0397\u0342"), ('\u1FC7', "\u0397\u0342\u0399"), ('\u1FCC', "\u0397\u0399"),
        ('\u1FD2', "\u0399\u0308\u0300"), ('\u1FD3', "\u0399\u0308\u0301"), ('\u1FD6', "\u0399\u0342"), ('\u1FD7', "\u0399\u0308\u0342"), ('\u1FE2', "\u03A5\u0308\u0300"),
        ('\u1FE3', "\u03A5\u0308\u0301"), ('\u1FE4', "\u03A1\u0313"), ('\u1FE6', "\u03A5\u0342"), ('\u1FE7', "\u03A5\u0308\u0342"), ('\u1FF2', "\u1FFA\u0399"),
        ('\u1FF3', "\u03A9\u0399"), ('\u1FF4', "\u038F\u0399"), ('\u1FF6', "\u03A9\u0342"), ('\u1FF7', "\u03A9\u0342\u0399"), ('\u1FFC', "\u03A9\u0399"),
        ('\uFB00', "\u0046\u0046"), ('\uFB01', "\u0046\u0049"), ('\uFB02', "\u0046\u004C"), ('\uFB03', "\u0046\u0046\u0049"), ('\uFB04', "\u0046\u0046\u004C"),
        ('\uFB05', "\u0053\u0054"), ('\uFB06', "\u0053\u0054"), ('\uFB13', "\u0544\u0546"), ('\uFB14', "\u0544\u0535"), ('\uFB15', "\u0544\u053B"),
        ('\uFB16', "\u054E\u0546"), ('\uFB17', "\u0544\u053D"),
    ];

    private static readonly Dictionary<char, string> Upper = UpperExpansions.ToDictionary(e => e.From, e => e.To);
    private static readonly SearchValues<char> UpperSpecial = SearchValues.Create(UpperExpansions.Select(e => e.From).ToArray());
    private static readonly SearchValues<char> LowerSpecial = SearchValues.Create("\u0130\u03A3");

    public static string ToUpper(string s)
    {
        int special = s.AsSpan().IndexOfAny(UpperSpecial);
        if (special < 0) return s.ToUpperInvariant();
        var output = new StringBuilder(s.Length + 8);
        int start = 0;
        while (special >= 0)
        {
            output.Append(s[start..special].ToUpperInvariant()).Append(Upper[s[special]]);
            start = special + 1;
            int next = s.AsSpan(start).IndexOfAny(UpperSpecial);
            special = next < 0 ? -1 : start + next;
        }
        return output.Append(s[start..].ToUpperInvariant()).ToString();
    }

    public static string ToLower(string s)
    {
        if (s.AsSpan().IndexOfAny(LowerSpecial) < 0) return s.ToLowerInvariant();
        var output = new StringBuilder(s.ToLowerInvariant());
        int shift = 0; // İ lowers to two characters
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == '\u0130')
            {
                output.Insert(i + shift + 1, '\u0307');
                shift++;
            }
            else if (s[i] == '\u03A3' && IsFinalSigma(s, i)) output[i + shift] = '\u03C2';
        }
        return output.ToString();
    }

    // Final_Sigma: a cased letter before (past case-ignorable characters), and none after.
    private static bool IsFinalSigma(string s, int at)
    {
        int before = at - 1;
        while (before >= 0 && IsCaseIgnorable(s[before])) before--;
        if (before < 0 || !IsCased(s[before])) return false;
        int after = at + 1;
        while (after < s.Length && IsCaseIgnorable(s[after])) after++;
        return after >= s.Length || !IsCased(s[after]);
    }

    private static bool IsCased(char c) =>
        char.GetUnicodeCategory(c) is UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter;

    private static bool IsCaseIgnorable(char c) =>
        c is '\'' or '.' or ':' or '\u00B7' or '\u2018' or '\u2019' or '\u2024' or '\u2027' ||
        char.GetUnicodeCategory(c) is UnicodeCategory.NonSpacingMark or UnicodeCategory.EnclosingMark or UnicodeCategory.Format
            or UnicodeCategory.ModifierLetter or UnicodeCategory.ModifierSymbol;
}

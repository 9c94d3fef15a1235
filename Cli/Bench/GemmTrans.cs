namespace LoraRuntime.Cli.Bench;

/// <summary>Whether A and B of a GEMM are stored transposed: "NN", "NT", "TN" or "TT" (A's letter first).</summary>
internal readonly record struct GemmTrans(Transpose A, Transpose B)
{
    /// <summary>"NN", "NT", "TN" or "TT".</summary>
    public override string ToString() => $"{Letter(A)}{Letter(B)}";

    /// <summary>Parses "NN", "NT", "TN" or "TT" (any case); throws <see cref="UsageException"/> naming <paramref name="option"/>.</summary>
    public static GemmTrans Parse(string? text, string option)
    {
        string t = text?.Trim().ToUpperInvariant() ?? "";
        if (t.Length == 2 && t[0] is ('N' or 'T') && t[1] is ('N' or 'T'))
            return new GemmTrans(t[0] == 'T' ? Transpose.Yes : Transpose.No, t[1] == 'T' ? Transpose.Yes : Transpose.No);
        throw new UsageException($"{option}: expected NN, NT, TN or TT; got '{text}'");
    }

    private static char Letter(Transpose t) => t == Transpose.Yes ? 'T' : 'N';
}

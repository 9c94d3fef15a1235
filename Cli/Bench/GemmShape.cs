using System.Globalization;

namespace LoraRuntime.Cli.Bench;

/// <summary>A GEMM size: C is M×N, op(A) is M×K, op(B) is K×N. Written "MxNxK".</summary>
internal readonly record struct GemmShape(int M, int N, int K)
{
    /// <summary>The shapes <c>lora bench gemm</c> runs by default: square, LoRA-like skinny ones, and a GEMV.</summary>
    public const string Defaults = "1024x1024x1024,2048x2048x2048,512x4096x4096,512x16x4096,512x4096x16,1x4096x4096";

    /// <summary>Floating-point operations of one product: 2·M·N·K.</summary>
    public double Flops => 2.0 * M * N * K;

    /// <summary>"MxNxK".</summary>
    public override string ToString() => $"{M}x{N}x{K}";

    /// <summary>
    /// Parses a comma-separated list of "MxNxK" tokens (blanks around tokens allowed, 'x' or 'X'). Throws a
    /// <see cref="UsageException"/> naming <paramref name="option"/> and the first bad token.
    /// </summary>
    public static IReadOnlyList<GemmShape> ParseList(string? text, string option)
    {
        if (string.IsNullOrWhiteSpace(text)) throw new UsageException($"{option}: expected a list like 1024x1024x1024,512x16x4096; got nothing");
        var shapes = new List<GemmShape>();
        foreach (string token in text.Split(','))
            shapes.Add(Parse(token.Trim(), option));
        return shapes;
    }

    /// <summary>Parses one "MxNxK" token; see <see cref="ParseList"/>.</summary>
    public static GemmShape Parse(string token, string option)
    {
        if (token.Length == 0) throw new UsageException($"{option}: empty shape in the list (a stray comma?); expected MxNxK");
        string[] parts = token.Split('x', 'X');
        if (parts.Length != 3)
            throw Bad(token, option, "expected MxNxK, three positive integers joined by 'x' (e.g. 512x16x4096)");
        Span<int> dims = stackalloc int[3];
        for (int i = 0; i < 3; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out dims[i]))
                throw Bad(token, option, $"'{parts[i]}' is not a positive integer");
            if (dims[i] == 0) throw Bad(token, option, "every dimension must be at least 1");
        }
        var shape = new GemmShape(dims[0], dims[1], dims[2]);
        long largest = Math.Max(Math.Max((long)shape.M * shape.K, (long)shape.K * shape.N), (long)shape.M * shape.N);
        if (largest > Array.MaxLength)
            throw Bad(token, option, $"a matrix of {largest} elements is larger than a benchmark can hold ({Array.MaxLength})");
        return shape;
    }

    private static UsageException Bad(string token, string option, string why) =>
        new($"{option}: bad shape '{token}': {why}");
}

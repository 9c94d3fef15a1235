namespace LoraRuntime;

/// <summary>
/// How <see cref="Backend.TruncatedSvd"/> finds the top singular triplets (Halko, Martinsson and Tropp's randomized
/// range finder): it samples the range of A with <c>rank + Oversampling</c> Gaussian test vectors (at most
/// min(m, n)), sharpens the sample with <see cref="PowerIterations"/> passes of A·Aᵀ (re-orthonormalised by QR after
/// every product), and takes the exact SVD of A projected onto it. The same <see cref="Seed"/> gives the same result.
/// </summary>
/// <param name="Oversampling">Extra test vectors beyond the rank (≥ 0): more make the top values more accurate.</param>
/// <param name="PowerIterations">Passes of A·Aᵀ (0 to 100): each sharpens a slowly decaying spectrum.</param>
/// <param name="Seed">The seed of the Gaussian test matrix.</param>
public readonly record struct TruncatedSvdOptions(int Oversampling = 10, int PowerIterations = 2, ulong Seed = 0)
{
    /// <summary>
    /// The documented defaults (10, 2, 0). Without this constructor <c>new TruncatedSvdOptions()</c> would be the
    /// all-zero <c>default</c>, silently turning oversampling and power iterations off.
    /// </summary>
    public TruncatedSvdOptions() : this(10, 2, 0) { }

    /// <summary>The most power iterations allowed (each one costs two passes over A).</summary>
    public const int MaxPowerIterations = 100;
}

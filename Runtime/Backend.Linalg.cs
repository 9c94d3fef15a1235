namespace LoraRuntime;

// Dense linear algebra for LoRA's SVD-based features (PiSSA initialisation, compressing a layer to rank k, extracting
// an adapter from a weight delta): QR, the exact thin SVD and the randomized truncated SVD of float32 matrices.
// Validation is complete before anything is written: shapes, aliasing, and that A is finite.
public abstract partial class Backend
{
    /// <summary>
    /// Householder QR of <paramref name="a"/> [m, n]: <paramref name="q"/> [m, k] with orthonormal columns and
    /// <paramref name="r"/> [k, n] upper triangular (trapezoidal when m &lt; n), k = min(m, n), a = q·r. The diagonal
    /// of r is made nonnegative, so q and r are unique when a has full rank.
    /// </summary>
    public void Qr(Tensor q, Tensor r, Tensor a)
    {
        Check.Tensors(this, DType.F32, [q, r, a], [nameof(q), nameof(r), nameof(a)]);
        var (m, n) = CheckMatrix(a, nameof(a));
        int k = Math.Min(m, n);
        CheckMatrixShape(q, nameof(q), m, k, "[m, k]", a);
        CheckMatrixShape(r, nameof(r), k, n, "[k, n]", a);
        Check.Disjoint(2, [q, r, a], [nameof(q), nameof(r), nameof(a)]);
        CheckFinite(a, nameof(a));
        if (k > 0) QrCore(q, r, a);
    }

    /// <summary>
    /// The thin SVD of <paramref name="a"/> [m, n] = u·diag(s)·vt with k = min(m, n): <paramref name="u"/> [m, k] and
    /// the rows of <paramref name="vt"/> [k, n] orthonormal, <paramref name="s"/> [k] nonnegative and descending. Signs
    /// are deterministic: the largest-magnitude entry of each column of u is positive.
    /// </summary>
    public void Svd(Tensor u, Tensor s, Tensor vt, Tensor a)
    {
        Check.Tensors(this, DType.F32, [u, s, vt, a], [nameof(u), nameof(s), nameof(vt), nameof(a)]);
        var (m, n) = CheckMatrix(a, nameof(a));
        int k = Math.Min(m, n);
        CheckSvdOutputs(u, s, vt, a, m, n, k, 'k', "k = min(m, n)");
        if (k > 0) SvdCore(u, s, vt, a);
    }

    /// <summary>
    /// The top r = <paramref name="s"/>.Length singular triplets of <paramref name="a"/> [m, n], a ≈ u·diag(s)·vt,
    /// by the randomized method of <see cref="TruncatedSvdOptions"/>: <paramref name="u"/> [m, r],
    /// <paramref name="s"/> [r] descending, <paramref name="vt"/> [r, n], 1 ≤ r ≤ min(m, n). Signs as in
    /// <see cref="Svd"/>; the same options give the same result.
    /// </summary>
    public void TruncatedSvd(Tensor u, Tensor s, Tensor vt, Tensor a, TruncatedSvdOptions options)
    {
        Check.Tensors(this, DType.F32, [u, s, vt, a], [nameof(u), nameof(s), nameof(vt), nameof(a)]);
        var (m, n) = CheckMatrix(a, nameof(a));
        if (s.Shape.Rank != 1)
            throw new ArgumentException($"s: expected a vector [r] whose length is the rank r; got s {s.Shape}", nameof(s));
        int rank = s.Shape[0];
        if (rank < 1)
            throw new ArgumentException($"s: the rank r = s.Length must be ≥ 1; got s {s.Shape}", nameof(s));
        if (rank > Math.Min(m, n))
            throw new ArgumentException(
                $"s: the rank r = s.Length must be ≤ min(m, n) = {Math.Min(m, n)} for a {a.Shape}; got r = {rank}", nameof(s));
        CheckSvdOutputs(u, s, vt, a, m, n, rank, 'r', "r = s.Length");
        if (options.Oversampling < 0)
            throw new ArgumentException($"options: expected Oversampling ≥ 0; got {options.Oversampling}", nameof(options));
        if (options.PowerIterations is < 0 or > TruncatedSvdOptions.MaxPowerIterations)
            throw new ArgumentException(
                $"options: expected 0 ≤ PowerIterations ≤ {TruncatedSvdOptions.MaxPowerIterations}; got {options.PowerIterations}", nameof(options));
        TruncatedSvdCore(u, s, vt, a, options);
    }

    private void CheckSvdOutputs(Tensor u, Tensor s, Tensor vt, Tensor a, int m, int n, int k, char kSymbol, string kMeaning)
    {
        CheckMatrixShape(u, nameof(u), m, k, $"[m, {kSymbol}]", a, kMeaning);
        if (s.Shape.Rank != 1 || s.Shape[0] != k)
            throw new ArgumentException($"s: expected shape [{k}] ({kMeaning} for a {a.Shape}); got s {s.Shape}", nameof(s));
        CheckMatrixShape(vt, nameof(vt), k, n, $"[{kSymbol}, n]", a, kMeaning);
        Check.Disjoint(3, [u, s, vt, a], [nameof(u), nameof(s), nameof(vt), nameof(a)]);
        CheckFinite(a, nameof(a));
    }

    private static (int Rows, int Cols) CheckMatrix(Tensor a, string name)
    {
        if (a.Shape.Rank != 2)
            throw new ArgumentException($"{name}: expected a matrix [m, n]; got {name} {a.Shape}", name);
        return (a.Shape[0], a.Shape[1]);
    }

    private static void CheckMatrixShape(Tensor t, string name, int rows, int cols, string symbols, Tensor a, string kMeaning = "k = min(m, n)")
    {
        if (t.Shape.Rank != 2 || t.Shape[0] != rows || t.Shape[1] != cols)
            throw new ArgumentException(
                $"{name}: expected shape {symbols} = [{rows}, {cols}] ({kMeaning} for a {a.Shape}); got {name} {t.Shape}", name);
    }

    private void CheckFinite(Tensor a, string name)
    {
        if (a.Length == 0) return;
        long at = FindNonFiniteCore(a, out float value);
        if (at >= 0)
            throw new ArgumentException(
                $"{name}: expected finite values; element [{at / a.Shape.Last}, {at % a.Shape.Last}] of {name} {a.Shape} is {value}", name);
    }

    /// <summary>The position of the first NaN or infinity of a float32 tensor, with its value; −1 when all are finite.</summary>
    protected abstract long FindNonFiniteCore(Tensor tensor, out float value);

    /// <summary>Validated <see cref="Qr"/> with k ≥ 1.</summary>
    protected abstract void QrCore(Tensor q, Tensor r, Tensor a);

    /// <summary>Validated <see cref="Svd"/> with k ≥ 1.</summary>
    protected abstract void SvdCore(Tensor u, Tensor s, Tensor vt, Tensor a);

    /// <summary>Validated <see cref="TruncatedSvd"/>.</summary>
    protected abstract void TruncatedSvdCore(Tensor u, Tensor s, Tensor vt, Tensor a, TruncatedSvdOptions options);
}

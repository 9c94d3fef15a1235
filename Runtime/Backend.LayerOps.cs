namespace LoraRuntime;

// The operations the layers need beyond the GEMM family and the fused primitives: bias broadcast and its gradient,
// row and column scalings (DoRA), attention's head permutations, dropout with a counter-based generator, and a
// finiteness scan (safe merge). Same contract as Backend.Primitives: validate everything, then call the core;
// outputs first; backward methods accumulate (+=).
public abstract partial class Backend
{
    /// <summary>
    /// output[n, :] = input[n, :] + bias for each row n of input (all dimensions but the last), bias holding one
    /// element per column. output has input's shape and may be input itself.
    /// </summary>
    public void AddBias(Tensor output, Tensor input, Tensor bias)
    {
        CheckRowsByVector(output, nameof(output), input, nameof(input), bias, nameof(bias), perColumn: true);
        if (output.Length > 0) AddBiasCore(output, input, bias);
    }

    /// <summary>dBias[j] += Σ_n dOutput[n, j]: the bias gradient, a column sum over the rows of dOutput.</summary>
    public void BiasBackward(Tensor dBias, Tensor dOutput)
    {
        Check.Tensors(this, DType.F32, [dBias, dOutput], [nameof(dBias), nameof(dOutput)]);
        Check.OnePerColumn(dBias, nameof(dBias), dOutput, nameof(dOutput));
        Check.Disjoint(1, [dBias, dOutput], [nameof(dBias), nameof(dOutput)]);
        if (dBias.Length > 0) ColumnSumCore(dBias, dOutput, null);
    }

    /// <summary>
    /// output[j] += Σ_n a[n, j]·b[n, j]: per-column dot products of two matrices of the same shape (N rows of the
    /// last dimension). output shares no memory with a or b.
    /// </summary>
    public void ColumnDot(Tensor output, Tensor a, Tensor b)
    {
        Check.Tensors(this, DType.F32, [output, a, b], [nameof(output), nameof(a), nameof(b)]);
        Check.SameShape(b, nameof(b), a, nameof(a));
        Check.OnePerColumn(output, nameof(output), a, nameof(a));
        Check.Disjoint(1, [output, a, b], [nameof(output), nameof(a), nameof(b)]);
        if (output.Length > 0) ColumnSumCore(output, a, b);
    }

    /// <summary>output[n, j] = input[n, j]·scale[j] (scale has one element per column); output may be input itself.</summary>
    public void ScaleColumns(Tensor output, Tensor input, Tensor scale)
    {
        CheckRowsByVector(output, nameof(output), input, nameof(input), scale, nameof(scale), perColumn: true);
        if (output.Length > 0) ScaleColumnsCore(output, input, scale);
    }

    /// <summary>output[i, j] = input[i, j]·scale[i] (scale has one element per row); output may be input itself.</summary>
    public void ScaleRows(Tensor output, Tensor input, Tensor scale)
    {
        CheckRowsByVector(output, nameof(output), input, nameof(input), scale, nameof(scale), perColumn: false);
        if (output.Length > 0) ScaleRowsCore(output, input, scale);
    }

    /// <summary>output[i] = ‖input[i, :]‖₂, the Euclidean norm of each row (all dimensions but the last).</summary>
    public void RowNorms(Tensor output, Tensor input)
    {
        Check.Tensors(this, DType.F32, [output, input], [nameof(output), nameof(input)]);
        Check.OnePerRow(output, nameof(output), input, nameof(input));
        Check.Disjoint(1, [output, input], [nameof(output), nameof(input)]);
        if (output.Length > 0) RowNormsCore(output, input);
    }

    /// <summary>output = a / b, element by element (IEEE division); output may be a or b itself.</summary>
    public void Divide(Tensor output, Tensor a, Tensor b)
    {
        Check.Tensors(this, DType.F32, [output, a, b], [nameof(output), nameof(a), nameof(b)]);
        Check.SameLengths(output, nameof(output), [a, b], [nameof(a), nameof(b)]);
        Check.SameOrDisjoint(output, nameof(output), a, nameof(a));
        Check.SameOrDisjoint(output, nameof(output), b, nameof(b));
        if (output.Length > 0) DivideCore(output, a, b);
    }

    /// <summary>
    /// Gathers attention heads: heads [B, NH, T, HS] gets heads[b, h, t, d] = rows[b·T + t, column + h·HS + d], where
    /// rows holds B·T rows (all dimensions but the last, e.g. [B, T, W]) of W ≥ column + NH·HS columns. With the fused
    /// QKV output [B, T, 3C], column 0, C and 2C give q, k and v.
    /// </summary>
    public void SplitHeads(Tensor heads, Tensor rows, int column)
    {
        CheckHeads(heads, nameof(heads), rows, nameof(rows), column);
        Check.Disjoint(1, [heads, rows], [nameof(heads), nameof(rows)]);
        if (heads.Length > 0) HeadsCore(heads, rows, column, split: true);
    }

    /// <summary>
    /// The inverse of <see cref="SplitHeads"/>: rows[b·T + t, column + h·HS + d] = heads[b, h, t, d]; the other
    /// columns of rows are left as they are.
    /// </summary>
    public void MergeHeads(Tensor rows, Tensor heads, int column)
    {
        CheckHeads(heads, nameof(heads), rows, nameof(rows), column);
        Check.Disjoint(1, [rows, heads], [nameof(rows), nameof(heads)]);
        if (heads.Length > 0) HeadsCore(heads, rows, column, split: false);
    }

    /// <summary>
    /// Inverted dropout with a counter-based generator: element i is kept when <see cref="DropoutBits"/>(seed,
    /// firstIndex + i) / 2²⁴ ≥ probability, and kept elements are scaled by 1/(1 − probability): output = input ⊙ keep /
    /// (1 − p). The mask is a pure function of (seed, index), so nothing is stored and the backward pass recomputes it;
    /// <paramref name="firstIndex"/> places the tensor inside a larger one (a data-parallel rank's rows of the global
    /// batch draw that batch's mask). probability is in [0, 1); output may be input itself.
    /// </summary>
    public void DropoutForward(Tensor output, Tensor input, float probability, ulong seed, ulong firstIndex = 0)
    {
        CheckElementwise(output, input, nameof(output), nameof(input));
        Check.InRange(probability, 0, 1, false, nameof(probability));
        if (output.Length > 0) DropoutCore(output, input, probability, seed, firstIndex, accumulate: false);
    }

    /// <summary>dInput += dOutput ⊙ keep / (1 − p) with the mask of <see cref="DropoutForward"/> for the same seed and first index.</summary>
    public void DropoutBackward(Tensor dInput, Tensor dOutput, float probability, ulong seed, ulong firstIndex = 0)
    {
        Check.Tensors(this, DType.F32, [dInput, dOutput], [nameof(dInput), nameof(dOutput)]);
        Check.SameLength(dOutput, nameof(dOutput), dInput, nameof(dInput));
        Check.Disjoint(1, [dInput, dOutput], [nameof(dInput), nameof(dOutput)]);
        Check.InRange(probability, 0, 1, false, nameof(probability));
        if (dInput.Length > 0) DropoutCore(dInput, dOutput, probability, seed, firstIndex, accumulate: true);
    }

    /// <summary>
    /// The 32 random bits of element <paramref name="index"/> under <paramref name="seed"/>: two rounds of a 32-bit
    /// avalanche mix keyed by both halves of the seed. Every backend computes exactly this, so masks agree across devices.
    /// </summary>
    public static uint DropoutBits(ulong seed, ulong index)
    {
        uint x = Mix32((uint)index ^ (uint)seed);
        return Mix32(x + ((uint)(index >> 32) ^ (uint)(seed >> 32)));
    }

    /// <summary>The drop threshold on the top 24 bits: element i is dropped when DropoutBits(seed, i) >> 8 &lt; threshold.</summary>
    public static uint DropoutThreshold(float probability) => (uint)Math.Round(probability * (double)(1 << 24));

    /// <summary>Chris Wellons' lowbias32 integer hash (a bijection on 32 bits with low bias).</summary>
    internal static uint Mix32(uint x)
    {
        x ^= x >> 16;
        x *= 0x7feb352d;
        x ^= x >> 15;
        x *= 0x846ca68b;
        x ^= x >> 16;
        return x;
    }

    /// <summary>
    /// The index of the first NaN or infinite element of <paramref name="input"/>, or −1 when every element is finite.
    /// Synchronises with the host (merge-time checks, not hot paths).
    /// </summary>
    public long FindNonFinite(Tensor input)
    {
        Check.Tensor(this, input, DType.F32, nameof(input));
        return input.Length == 0 ? -1 : FindNonFiniteCore(input);
    }

    /// <summary>output and input have the same shape (output may be input) and vector holds one element per column or row.</summary>
    private void CheckRowsByVector(Tensor output, string outputName, Tensor input, string inputName, Tensor vector, string vectorName, bool perColumn)
    {
        Check.Tensors(this, DType.F32, [output, input, vector], [outputName, inputName, vectorName]);
        Check.SameShape(output, outputName, input, inputName);
        Check.SameOrDisjoint(output, outputName, input, inputName);
        if (perColumn) Check.OnePerColumn(vector, vectorName, input, inputName);
        else Check.OnePerRow(vector, vectorName, input, inputName);
        Check.NoOverlap(output, outputName, vector, vectorName);
    }

    private void CheckHeads(Tensor heads, string headsName, Tensor rows, string rowsName, int column)
    {
        Check.Tensors(this, DType.F32, [heads, rows], [headsName, rowsName]);
        if (heads.Shape.Rank != 4)
            throw new ArgumentException($"{headsName}: expected [B, NH, T, HS]; got {headsName} {heads.Shape}", headsName);
        int batch = heads.Shape[0], nh = heads.Shape[1], time = heads.Shape[2], hs = heads.Shape[3];
        if (rows.Shape.Rank < 2 || rows.Shape.Rows != (long)batch * time)
            throw new ArgumentException(
                $"{rowsName}: expected B·T = {(long)batch * time} rows (B = {batch}, T = {time} from {headsName} {heads.Shape}); got {rowsName} {rows.Shape}", rowsName);
        if (column < 0 || (long)column + (long)nh * hs > rows.Shape.Last)
            throw new ArgumentOutOfRangeException(nameof(column), column,
                $"column: the NH·HS = {(long)nh * hs} columns from column {column} must lie within the {rows.Shape.Last} columns of {rowsName} {rows.Shape}");
    }

    /// <summary>Validated, non-empty <see cref="AddBias"/>.</summary>
    protected abstract void AddBiasCore(Tensor output, Tensor input, Tensor bias);

    /// <summary>Validated, non-empty column sums: output[j] += Σ_n a[n, j], or Σ_n a[n, j]·b[n, j] when b is given.</summary>
    protected abstract void ColumnSumCore(Tensor output, Tensor a, Tensor? b);

    /// <summary>Validated, non-empty <see cref="ScaleColumns"/>.</summary>
    protected abstract void ScaleColumnsCore(Tensor output, Tensor input, Tensor scale);

    /// <summary>Validated, non-empty <see cref="ScaleRows"/>.</summary>
    protected abstract void ScaleRowsCore(Tensor output, Tensor input, Tensor scale);

    /// <summary>Validated, non-empty <see cref="RowNorms"/>.</summary>
    protected abstract void RowNormsCore(Tensor output, Tensor input);

    /// <summary>Validated, non-empty <see cref="Divide"/>.</summary>
    protected abstract void DivideCore(Tensor output, Tensor a, Tensor b);

    /// <summary>Validated, non-empty <see cref="SplitHeads"/> (split) or <see cref="MergeHeads"/> (not split).</summary>
    protected abstract void HeadsCore(Tensor heads, Tensor rows, int column, bool split);

    /// <summary>Validated, non-empty dropout: forward writes output, backward (accumulate) adds into it.</summary>
    protected abstract void DropoutCore(Tensor output, Tensor input, float probability, ulong seed, ulong firstIndex, bool accumulate);

    /// <summary>Validated, non-empty <see cref="FindNonFinite"/>.</summary>
    protected abstract long FindNonFiniteCore(Tensor input);
}

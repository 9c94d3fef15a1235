namespace LoraRuntime;

// The operations of Llama-family blocks: RMS norm (of rows, and of heads inside rows: Qwen3's q/k norms), the gated SiLU
// of the MLP, and rotary position embeddings.
public abstract partial class Backend
{
    /// <summary>
    /// RMS normalisation of input read as N rows × C (C its last dimension): output = x·rstd ⊙ weight with
    /// rstd = 1/√(mean(x²) + epsilon), computed in float32 as Llama's RMSNorm does. rstd (N elements) is kept for the
    /// backward pass; weight has C elements. Outputs share no memory with inputs or each other.
    /// </summary>
    public void RmsNormForward(Tensor output, Tensor rstd, Tensor input, Tensor weight, float epsilon)
    {
        ReadOnlySpan<string> names = [nameof(output), nameof(rstd), nameof(input), nameof(weight)];
        Check.Tensors(this, DType.F32, [output, rstd, input, weight], names);
        Check.SameShape(output, nameof(output), input, nameof(input));
        Check.HasColumns(input, nameof(input));
        Check.OnePerRow(rstd, nameof(rstd), input, nameof(input));
        Check.OnePerColumn(weight, nameof(weight), input, nameof(input));
        Check.InRange(epsilon, 0, float.MaxValue, true, nameof(epsilon));
        Check.Disjoint(2, [output, rstd, input, weight], names);
        if (output.Length > 0) RmsNormForwardCore(output, rstd, input, weight, epsilon);
    }

    /// <summary>
    /// The gradients of <see cref="RmsNormForward"/>, accumulated: dInput (input's shape) and dWeight (C elements) +=
    /// their contributions from dOutput, given the forward's input, weight and rstd.
    /// </summary>
    public void RmsNormBackward(Tensor dInput, Tensor dWeight, Tensor dOutput, Tensor input, Tensor weight, Tensor rstd)
    {
        ReadOnlySpan<string> names = [nameof(dInput), nameof(dWeight), nameof(dOutput), nameof(input), nameof(weight), nameof(rstd)];
        Check.Tensors(this, DType.F32, [dInput, dWeight, dOutput, input, weight, rstd], names);
        Check.SameShapes(input, nameof(input), [dInput, dOutput], [nameof(dInput), nameof(dOutput)]);
        Check.HasColumns(input, nameof(input));
        Check.OnePerRow(rstd, nameof(rstd), input, nameof(input));
        Check.OnePerColumn(weight, nameof(weight), input, nameof(input));
        Check.SameLengths(weight, nameof(weight), [dWeight], [nameof(dWeight)]);
        Check.Disjoint(2, [dInput, dWeight, dOutput, input, weight, rstd], names);
        if (dInput.Length > 0) RmsNormBackwardCore(dInput, dWeight, dOutput, input, weight, rstd);
    }

    /// <summary>
    /// The gated MLP's activation (SwiGLU): input is N rows of [gate | up], each I wide (2I its last dimension), and
    /// output [N, I] = silu(gate) ⊙ up, with silu(x) = x·σ(x). output shares no memory with input.
    /// </summary>
    public void GatedSiluForward(Tensor output, Tensor input)
    {
        Check.Tensors(this, DType.F32, [output, input], [nameof(output), nameof(input)]);
        CheckGated(output, nameof(output), input, nameof(input));
        Check.Disjoint(1, [output, input], [nameof(output), nameof(input)]);
        if (output.Length > 0) GatedSiluForwardCore(output, input);
    }

    /// <summary>
    /// The backward pass of <see cref="GatedSiluForward"/>, stored (not accumulated): dInput [N, 2I] gets
    /// dgate = dy ⊙ up ⊙ silu′(gate) and dup = dy ⊙ silu(gate) from dOutput [N, I] and the forward's input.
    /// </summary>
    public void GatedSiluBackward(Tensor dInput, Tensor input, Tensor dOutput)
    {
        Check.Tensors(this, DType.F32, [dInput, input, dOutput], [nameof(dInput), nameof(input), nameof(dOutput)]);
        Check.SameShape(input, nameof(input), dInput, nameof(dInput));
        CheckGated(dOutput, nameof(dOutput), input, nameof(input));
        Check.Disjoint(1, [dInput, input, dOutput], [nameof(dInput), nameof(input), nameof(dOutput)]);
        if (dOutput.Length > 0) GatedSiluBackwardCore(dInput, input, dOutput);
    }

    /// <summary>
    /// Rotary position embeddings, in place, in Hugging Face's rotate-half convention: rows is N rows (the last
    /// dimension its width), and in each the first <paramref name="heads"/> heads of <paramref name="headSize"/> floats
    /// (q's and k's heads at the start of a packed projection's row) are rotated in their first 2·H dimensions, where
    /// cos and sin are [P, H] tables (H = half the rotated dimensions; partial rotary leaves the rest of each head
    /// alone): x[i] ← x[i]·cos[p, i] − x[i + H]·sin[p, i], x[i + H] ← x[i + H]·cos[p, i] + x[i]·sin[p, i] with p the
    /// row's position (<paramref name="positions"/>: N int32 in [0, P)). <paramref name="inverse"/> rotates by −θ: the
    /// backward pass applied to the gradient.
    /// </summary>
    public void Rotary(Tensor rows, Tensor positions, int heads, int headSize, Tensor cos, Tensor sin, bool inverse)
    {
        Check.Tensors(this, DType.F32, [rows, cos, sin], [nameof(rows), nameof(cos), nameof(sin)]);
        Check.Tensor(this, positions, DType.I32, nameof(positions));
        Check.Positive(heads, nameof(heads));
        Check.Positive(headSize, nameof(headSize));
        Check.HasColumns(rows, nameof(rows));
        Check.OnePerRow(positions, nameof(positions), rows, nameof(rows));
        if ((long)heads * headSize > rows.Shape.Last)
            throw new ArgumentException($"heads: {heads} heads of {headSize} must fit in a row of {rows.Shape.Last}; got rows {rows.Shape}", nameof(heads));
        if (cos.Shape.Rank != 2 || cos.Shape[1] < 1 || 2L * cos.Shape[1] > headSize)
            throw new ArgumentException($"cos: expected a table [P, H] with 1 ≤ 2H ≤ headSize = {headSize}; got {cos.Shape}", nameof(cos));
        Check.SameShape(cos, nameof(cos), sin, nameof(sin));
        Check.Disjoint(1, [rows, positions, cos, sin], [nameof(rows), nameof(positions), nameof(cos), nameof(sin)]);
        if (rows.Length == 0) return;
        int table = cos.Shape[0];
        long position = FindIdOutsideCore(positions, 0, table - 1, out int value);
        if (position >= 0)
            throw new ArgumentException(
                $"positions: row {position} has position {value}, expected 0 ≤ position < {table} (the rows of the cos and sin tables)", nameof(positions));
        RotaryCore(rows, positions, heads, headSize, cos, sin, inverse);
    }

    /// <summary>
    /// RMS normalisation of each of <paramref name="heads"/> heads of <paramref name="headSize"/> floats starting at head
    /// <paramref name="firstHead"/> of every row of <paramref name="rows"/> (N rows, the last dimension their width), in
    /// place: x ← x·rstd ⊙ weight per head (Qwen3's q_norm and k_norm, before the rotary embedding). rstd (N × heads)
    /// is kept for the backward pass; weight has <paramref name="headSize"/> elements.
    /// </summary>
    public void HeadRmsNormForward(Tensor rows, Tensor rstd, int firstHead, int heads, int headSize, Tensor weight, float epsilon)
    {
        CheckHeadNorm(rows, nameof(rows), rstd, firstHead, heads, headSize, weight);
        Check.InRange(epsilon, 0, float.MaxValue, true, nameof(epsilon));
        Check.Disjoint(2, [rows, rstd, weight], [nameof(rows), nameof(rstd), nameof(weight)]);
        if (rows.Length > 0) HeadRmsNormForwardCore(rows, rstd, firstHead, heads, headSize, weight, epsilon);
    }

    /// <summary>
    /// The backward pass of <see cref="HeadRmsNormForward"/>, in place: on entry <paramref name="dRows"/>' heads hold the
    /// gradient of the normalised values, on return that of the input (the forward's <paramref name="input"/> rows,
    /// before normalisation); dWeight += Σ n ⊙ dy over every row and head. Other columns of dRows are left alone.
    /// </summary>
    public void HeadRmsNormBackward(Tensor dRows, Tensor dWeight, Tensor input, Tensor weight, Tensor rstd, int firstHead, int heads, int headSize)
    {
        CheckHeadNorm(input, nameof(input), rstd, firstHead, heads, headSize, weight);
        Check.Tensors(this, DType.F32, [dRows, dWeight], [nameof(dRows), nameof(dWeight)]);
        Check.SameShape(input, nameof(input), dRows, nameof(dRows));
        Check.SameLengths(weight, nameof(weight), [dWeight], [nameof(dWeight)]);
        Check.Disjoint(2, [dRows, dWeight, input, weight, rstd], [nameof(dRows), nameof(dWeight), nameof(input), nameof(weight), nameof(rstd)]);
        if (dRows.Length > 0) HeadRmsNormBackwardCore(dRows, dWeight, input, weight, rstd, firstHead, heads, headSize);
    }

    private void CheckHeadNorm(Tensor rows, string name, Tensor rstd, int firstHead, int heads, int headSize, Tensor weight)
    {
        Check.Tensors(this, DType.F32, [rows, rstd, weight], [name, nameof(rstd), nameof(weight)]);
        Check.HasColumns(rows, name);
        Check.Positive(heads, nameof(heads));
        Check.Positive(headSize, nameof(headSize));
        ArgumentOutOfRangeException.ThrowIfNegative(firstHead);
        if ((long)(firstHead + heads) * headSize > rows.Shape.Last)
            throw new ArgumentException($"heads: heads [{firstHead}, {firstHead + heads}) of {headSize} must fit in a row of {rows.Shape.Last}; got {name} {rows.Shape}", nameof(heads));
        if (rstd.Length != rows.Shape.Rows * heads)
            throw new ArgumentException($"rstd: expected N × heads = {rows.Shape.Rows * heads} values; got {rstd.Shape}", nameof(rstd));
        if (weight.Length != headSize)
            throw new ArgumentException($"weight: expected headSize = {headSize} values; got {weight.Shape}", nameof(weight));
    }

    /// <summary>Validated, non-empty <see cref="HeadRmsNormForward"/>.</summary>
    protected abstract void HeadRmsNormForwardCore(Tensor rows, Tensor rstd, int firstHead, int heads, int headSize, Tensor weight, float epsilon);

    /// <summary>Validated, non-empty <see cref="HeadRmsNormBackward"/>.</summary>
    protected abstract void HeadRmsNormBackwardCore(Tensor dRows, Tensor dWeight, Tensor input, Tensor weight, Tensor rstd, int firstHead, int heads, int headSize);

    /// <summary>output [N, I] against input [N, 2I].</summary>
    private static void CheckGated(Tensor half, string halfName, Tensor full, string fullName)
    {
        Check.HasColumns(full, fullName);
        if (full.Shape.Last % 2 != 0 || half.Shape.Rank != full.Shape.Rank || half.Shape.Rows != full.Shape.Rows || 2L * half.Shape.Last != full.Shape.Last)
            throw new ArgumentException(
                $"{halfName}: expected N rows of I with {fullName} N rows of [gate | up] = 2I (same leading dimensions); got {halfName} {half.Shape} and {fullName} {full.Shape}",
                halfName);
    }

    /// <summary>Validated, non-empty <see cref="RmsNormForward"/>.</summary>
    protected abstract void RmsNormForwardCore(Tensor output, Tensor rstd, Tensor input, Tensor weight, float epsilon);

    /// <summary>Validated, non-empty <see cref="RmsNormBackward"/>.</summary>
    protected abstract void RmsNormBackwardCore(Tensor dInput, Tensor dWeight, Tensor dOutput, Tensor input, Tensor weight, Tensor rstd);

    /// <summary>Validated, non-empty <see cref="GatedSiluForward"/>.</summary>
    protected abstract void GatedSiluForwardCore(Tensor output, Tensor input);

    /// <summary>Validated, non-empty <see cref="GatedSiluBackward"/>.</summary>
    protected abstract void GatedSiluBackwardCore(Tensor dInput, Tensor input, Tensor dOutput);

    /// <summary>Validated, non-empty <see cref="Rotary"/> (every position in range).</summary>
    protected abstract void RotaryCore(Tensor rows, Tensor positions, int heads, int headSize, Tensor cos, Tensor sin, bool inverse);
}

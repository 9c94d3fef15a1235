namespace LoraRuntime;

// The fused element-wise and reduction primitives the layers are built from. Each public method validates
// everything (dtypes, shapes, aliasing, ids) before the core writes anything. Argument order follows llm.c:
// outputs, then inputs, then sizes and scalars. Backward methods accumulate into their gradients (+=).
public abstract partial class Backend
{
    /// <summary>output = a + b, element by element. All three have the same length; output may be a or b itself.</summary>
    public void Add(Tensor output, Tensor a, Tensor b)
    {
        Check.Tensors(this, DType.F32, [output, a, b], [nameof(output), nameof(a), nameof(b)]);
        Check.SameLengths(output, nameof(output), [a, b], [nameof(a), nameof(b)]);
        Check.SameOrDisjoint(output, nameof(output), a, nameof(a));
        Check.SameOrDisjoint(output, nameof(output), b, nameof(b));
        if (output.Length > 0) AddCore(output, a, b);
    }

    /// <summary>output = scale · input, element by element; output may be input itself.</summary>
    public void Scale(Tensor output, Tensor input, float scale)
    {
        CheckElementwise(output, input, nameof(output), nameof(input));
        Check.Finite(scale, nameof(scale));
        if (output.Length > 0) ScaleCore(output, input, scale);
    }

    /// <summary>y += alpha · x, element by element; x may be y itself.</summary>
    public void Axpy(Tensor y, float alpha, Tensor x)
    {
        CheckElementwise(y, x, nameof(y), nameof(x));
        Check.Finite(alpha, nameof(alpha));
        if (y.Length > 0) AxpyCore(y, alpha, x);
    }

    /// <summary>
    /// output = GELU(input) in its tanh form, 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), element by element;
    /// output may be input itself.
    /// </summary>
    public void GeluForward(Tensor output, Tensor input)
    {
        CheckElementwise(output, input, nameof(output), nameof(input));
        if (output.Length > 0) GeluForwardCore(output, input);
    }

    /// <summary>
    /// dInput += GELU′(input) · dOutput, element by element (or, without <paramref name="accumulate"/>, dInput = that
    /// product: no zeroing pass first). dInput shares no memory with the inputs.
    /// </summary>
    public void GeluBackward(Tensor dInput, Tensor input, Tensor dOutput, bool accumulate = true)
    {
        Check.Tensors(this, DType.F32, [dInput, input, dOutput], [nameof(dInput), nameof(input), nameof(dOutput)]);
        Check.SameLengths(dInput, nameof(dInput), [input, dOutput], [nameof(input), nameof(dOutput)]);
        Check.Disjoint(1, [dInput, input, dOutput], [nameof(dInput), nameof(input), nameof(dOutput)]);
        if (dInput.Length == 0) return;
        if (accumulate) GeluBackwardCore(dInput, input, dOutput);
        else GeluBackwardStoreCore(dInput, input, dOutput);
    }

    /// <summary>
    /// Softmax over each row of the last dimension (cols), subtracting the row maximum first. With
    /// <paramref name="causal"/>, the tensor is (…, T, cols) with T ≤ cols and the T rows of each matrix are the last
    /// T positions: row i sees columns j ≤ i + (cols − T) and its other outputs are exactly 0 (attention with a KV
    /// cache). output has input's shape and may be input itself.
    /// </summary>
    public void SoftmaxForward(Tensor output, Tensor input, bool causal)
    {
        CheckElementwise(output, input, nameof(output), nameof(input));
        Check.SameShape(output, nameof(output), input, nameof(input));
        CheckCausal(input, nameof(input), causal);
        if (output.Length > 0) SoftmaxForwardCore(output, input, causal);
    }

    /// <summary>
    /// dInput += p ⊙ (dOutput − Σ p ⊙ dOutput) per row, over the columns the row sees, where p is the
    /// <paramref name="output"/> of <see cref="SoftmaxForward"/> with the same <paramref name="causal"/>.
    /// </summary>
    public void SoftmaxBackward(Tensor dInput, Tensor output, Tensor dOutput, bool causal)
    {
        Check.Tensors(this, DType.F32, [dInput, output, dOutput], [nameof(dInput), nameof(output), nameof(dOutput)]);
        Check.SameShapes(output, nameof(output), [dInput, dOutput], [nameof(dInput), nameof(dOutput)]);
        CheckCausal(output, nameof(output), causal);
        Check.Disjoint(1, [dInput, output, dOutput], [nameof(dInput), nameof(output), nameof(dOutput)]);
        if (dInput.Length > 0) SoftmaxBackwardCore(dInput, output, dOutput, causal);
    }

    /// <summary>
    /// Layer normalisation of input read as N rows × C (C its last dimension): output = (x − mean)·rstd·weight + bias
    /// with rstd = 1/√(variance + epsilon), variance the biased one. mean and rstd (N elements each) are kept for
    /// the backward pass; weight and bias have C elements. Outputs share no memory with inputs or each other.
    /// </summary>
    public void LayerNormForward(Tensor output, Tensor mean, Tensor rstd, Tensor input, Tensor weight, Tensor bias, float epsilon)
    {
        ReadOnlySpan<string> names = [nameof(output), nameof(mean), nameof(rstd), nameof(input), nameof(weight), nameof(bias)];
        Check.Tensors(this, DType.F32, [output, mean, rstd, input, weight, bias], names);
        Check.SameShape(output, nameof(output), input, nameof(input));
        CheckLayerNormStatistics(input, mean, rstd, weight);
        Check.OnePerColumn(bias, nameof(bias), input, nameof(input));
        Check.InRange(epsilon, 0, float.MaxValue, true, nameof(epsilon));
        Check.Disjoint(3, [output, mean, rstd, input, weight, bias], names);
        if (output.Length > 0) LayerNormForwardCore(output, mean, rstd, input, weight, bias, epsilon);
    }

    /// <summary>
    /// The gradients of <see cref="LayerNormForward"/>, accumulated: dInput (input's shape), dWeight and dBias
    /// (C elements) += their contributions from dOutput, given the forward's input, weight, mean and rstd.
    /// </summary>
    public void LayerNormBackward(Tensor dInput, Tensor dWeight, Tensor dBias, Tensor dOutput, Tensor input, Tensor weight,
        Tensor mean, Tensor rstd)
    {
        ReadOnlySpan<string> names =
            [nameof(dInput), nameof(dWeight), nameof(dBias), nameof(dOutput), nameof(input), nameof(weight), nameof(mean), nameof(rstd)];
        Check.Tensors(this, DType.F32, [dInput, dWeight, dBias, dOutput, input, weight, mean, rstd], names);
        Check.SameShapes(input, nameof(input), [dInput, dOutput], [nameof(dInput), nameof(dOutput)]);
        CheckLayerNormStatistics(input, mean, rstd, weight);
        Check.SameLengths(weight, nameof(weight), [dWeight, dBias], [nameof(dWeight), nameof(dBias)]);
        Check.Disjoint(3, [dInput, dWeight, dBias, dOutput, input, weight, mean, rstd], names);
        if (dInput.Length > 0) LayerNormBackwardCore(dInput, dWeight, dBias, dOutput, input, weight, mean, rstd);
    }

    /// <summary>
    /// Cross-entropy of N rows of logits over V classes (V the last dimension): probs = softmax(logits) (kept for the
    /// backward pass), losses[n] = −log probs[n, targets[n]]. targets is <see cref="DType.I32"/> with N ids; a negative
    /// target means "ignore this row" (loss 0); a target ≥ V is an error, reported before anything is written.
    /// </summary>
    public void CrossEntropyForward(Tensor losses, Tensor probs, Tensor logits, Tensor targets)
    {
        CheckCrossEntropyShapes(losses, nameof(losses), probs, nameof(probs), logits, nameof(logits), targets);
        Check.Disjoint(2, [losses, probs, logits, targets], [nameof(losses), nameof(probs), nameof(logits), nameof(targets)]);
        CheckTargetValues(targets, logits, nameof(logits));
        if (logits.Length > 0) CrossEntropyForwardCore(losses, probs, logits, targets);
    }

    /// <summary>
    /// dLogits[n] += (probs[n] − onehot(targets[n])) · dLosses[n]; rows with a negative target get nothing.
    /// </summary>
    public void CrossEntropyBackward(Tensor dLogits, Tensor dLosses, Tensor probs, Tensor targets)
    {
        CheckCrossEntropyShapes(dLosses, nameof(dLosses), dLogits, nameof(dLogits), probs, nameof(probs), targets);
        Check.Disjoint(1, [dLogits, dLosses, probs, targets], [nameof(dLogits), nameof(dLosses), nameof(probs), nameof(targets)]);
        CheckTargetValues(targets, probs, nameof(probs));
        if (probs.Length > 0) CrossEntropyBackwardCore(dLogits, dLosses, probs, targets);
    }

    /// <summary>
    /// output[n] = table[ids[n]]: ids is <see cref="DType.I32"/> with N elements (any shape), table is [V, C] and
    /// output holds N rows of C (e.g. [B, T, C] for ids [B, T]). Every id must be in [0, V); this is checked before
    /// anything is written.
    /// </summary>
    public void EmbeddingForward(Tensor output, Tensor ids, Tensor table)
    {
        Check.Tensors(this, DType.F32, [output, table], [nameof(output), nameof(table)]);
        Check.Tensor(this, ids, DType.I32, nameof(ids));
        CheckEmbeddingShapes(output, nameof(output), ids, table, nameof(table));
        Check.Disjoint(1, [output, ids, table], [nameof(output), nameof(ids), nameof(table)]);
        CheckIdValues(ids, table, nameof(table));
        if (output.Length > 0) EmbeddingForwardCore(output, ids, table);
    }

    /// <summary>dTable[ids[n]] += dOutput[n] for every n (repeated ids accumulate). Shapes as in <see cref="EmbeddingForward(Tensor, Tensor, Tensor)"/>.</summary>
    public void EmbeddingBackward(Tensor dTable, Tensor dOutput, Tensor ids)
    {
        Check.Tensors(this, DType.F32, [dTable, dOutput], [nameof(dTable), nameof(dOutput)]);
        Check.Tensor(this, ids, DType.I32, nameof(ids));
        CheckEmbeddingShapes(dOutput, nameof(dOutput), ids, dTable, nameof(dTable));
        Check.Disjoint(1, [dTable, dOutput, ids], [nameof(dTable), nameof(dOutput), nameof(ids)]);
        CheckIdValues(ids, dTable, nameof(dTable));
        if (dOutput.Length > 0) EmbeddingBackwardCore(dTable, dOutput, ids);
    }

    /// <summary>
    /// One AdamW step with PyTorch's semantics, in place on parameters, m and v (all four tensors the same length):
    /// p ← p·(1 − lr·wd); m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²;
    /// p ← p − lr/(1 − β1^step) · m / (√v / √(1 − β2^step) + ε).
    /// Requires lr ≥ 0, β1 and β2 in [0, 1), ε &gt; 0, weight decay ≥ 0 and step ≥ 1 (the first step is 1).
    /// </summary>
    public void AdamWStep(Tensor parameters, Tensor gradients, Tensor m, Tensor v, float learningRate, float beta1, float beta2,
        float epsilon, float weightDecay, int step)
    {
        ReadOnlySpan<string> names = [nameof(parameters), nameof(m), nameof(v), nameof(gradients)];
        Check.Tensors(this, DType.F32, [parameters, m, v, gradients], names);
        Check.SameLengths(parameters, nameof(parameters), [gradients, m, v], [nameof(gradients), nameof(m), nameof(v)]);
        Check.InRange(learningRate, 0, float.MaxValue, true, nameof(learningRate));
        Check.InRange(beta1, 0, 1, false, nameof(beta1));
        Check.InRange(beta2, 0, 1, false, nameof(beta2));
        Check.FinitePositive(epsilon, nameof(epsilon));
        Check.InRange(weightDecay, 0, float.MaxValue, true, nameof(weightDecay));
        Check.Positive(step, nameof(step));
        Check.Disjoint(3, [parameters, m, v, gradients], names);
        if (parameters.Length > 0) AdamWStepCore(parameters, gradients, m, v, learningRate, beta1, beta2, epsilon, weightDecay, step);
    }

    private void CheckElementwise(Tensor output, Tensor input, string outputName, string inputName)
    {
        Check.Tensors(this, DType.F32, [output, input], [outputName, inputName]);
        Check.SameLength(output, outputName, input, inputName);
        Check.SameOrDisjoint(output, outputName, input, inputName);
    }

    private static void CheckCausal(Tensor t, string name, bool causal)
    {
        if (!causal) return;
        if (t.Shape.Rank < 2)
            throw new ArgumentException($"{name}: a causal softmax needs shape (…, T, cols); got {name} {t.Shape}", name);
        if (t.Shape[-2] > t.Shape.Last)
            throw new ArgumentException(
                $"{name}: a causal softmax needs T ≤ cols (the T queries are the last T of cols positions); got T = {t.Shape[-2]} > cols = {t.Shape.Last} in {name} {t.Shape}", name);
    }

    private static void CheckLayerNormStatistics(Tensor input, Tensor mean, Tensor rstd, Tensor weight)
    {
        Check.HasColumns(input, nameof(input));
        Check.OnePerRow(mean, nameof(mean), input, nameof(input));
        Check.OnePerRow(rstd, nameof(rstd), input, nameof(input));
        Check.OnePerColumn(weight, nameof(weight), input, nameof(input));
    }

    /// <summary>
    /// Both cross-entropy passes: an N×V <paramref name="matrix"/> (V ≥ 1), another tensor of its shape, one value per
    /// row, and N <see cref="DType.I32"/> targets.
    /// </summary>
    private void CheckCrossEntropyShapes(Tensor perRow, string perRowName, Tensor sameShape, string sameShapeName, Tensor matrix,
        string matrixName, Tensor targets)
    {
        Check.Tensors(this, DType.F32, [perRow, sameShape, matrix], [perRowName, sameShapeName, matrixName]);
        Check.Tensor(this, targets, DType.I32, nameof(targets));
        Check.SameShape(sameShape, sameShapeName, matrix, matrixName);
        Check.OnePerRow(perRow, perRowName, matrix, matrixName);
        Check.HasColumns(matrix, matrixName);
        Check.OnePerRow(targets, nameof(targets), matrix, matrixName);
    }

    /// <summary>Every target is &lt; V (the last dimension of <paramref name="matrix"/>) or negative.</summary>
    private void CheckTargetValues(Tensor targets, Tensor matrix, string matrixName)
    {
        int classes = matrix.Shape.Last;
        if (targets.Length == 0) return;
        long row = FindIdOutsideCore(targets, int.MinValue, classes - 1, out int target);
        if (row >= 0)
            throw new ArgumentException(
                $"targets: row {row} has target {target}, expected a class < {classes} (the last dimension of {matrixName} {matrix.Shape}) or a negative value to ignore the row", nameof(targets));
    }

    /// <summary>table is [V, C]; rows holds one row of C per id.</summary>
    private static void CheckEmbeddingShapes(Tensor rows, string rowsName, Tensor ids, Tensor table, string tableName)
    {
        if (table.Shape.Rank != 2)
            throw new ArgumentException($"{tableName}: expected a [V, C] table; got {tableName} {table.Shape}", tableName);
        int channels = table.Shape[1];
        if (rows.Shape.Rank == 0 || rows.Shape.Last != channels || rows.Shape.Rows != ids.Length)
            throw new ArgumentException(
                $"{rowsName}: expected {ids.Length} rows (one per id of ids {ids.Shape}) of {channels} columns (the C of {tableName} {table.Shape}); got {rowsName} {rows.Shape}", rowsName);
    }

    /// <summary>Every id is in [0, V) for a [V, C] table.</summary>
    private void CheckIdValues(Tensor ids, Tensor table, string tableName)
    {
        int vocabulary = table.Shape[0];
        if (ids.Length == 0) return;
        long position = FindIdOutsideCore(ids, 0, vocabulary - 1, out int id);
        if (position >= 0)
            throw new ArgumentException(
                $"ids: position {position} (of ids {ids.Shape}) has id {id}, expected 0 ≤ id < {vocabulary} (the rows of {tableName} {table.Shape})", nameof(ids));
    }

    /// <summary>
    /// The first position of an <see cref="DType.I32"/> tensor whose value lies outside [min, max] (an empty range when
    /// max &lt; min), with that value; −1 when all are inside. Validation uses it before a core writes anything.
    /// </summary>
    protected abstract long FindIdOutsideCore(Tensor ids, int min, int max, out int value);

    /// <summary>Validated, non-empty <see cref="Add"/>.</summary>
    protected abstract void AddCore(Tensor output, Tensor a, Tensor b);

    /// <summary>Validated, non-empty <see cref="Scale"/>.</summary>
    protected abstract void ScaleCore(Tensor output, Tensor input, float scale);

    /// <summary>Validated, non-empty <see cref="Axpy"/>.</summary>
    protected abstract void AxpyCore(Tensor y, float alpha, Tensor x);

    /// <summary>Validated, non-empty <see cref="GeluForward"/>.</summary>
    protected abstract void GeluForwardCore(Tensor output, Tensor input);

    /// <summary>Validated, non-empty <see cref="GeluBackward"/> that stores rather than adds. The default zeroes, then accumulates.</summary>
    protected virtual void GeluBackwardStoreCore(Tensor dInput, Tensor input, Tensor dOutput)
    {
        FillCore(dInput, 0f);
        GeluBackwardCore(dInput, input, dOutput);
    }

    /// <summary>Validated, non-empty <see cref="GeluBackward"/>.</summary>
    protected abstract void GeluBackwardCore(Tensor dInput, Tensor input, Tensor dOutput);

    /// <summary>Validated, non-empty <see cref="SoftmaxForward"/>.</summary>
    protected abstract void SoftmaxForwardCore(Tensor output, Tensor input, bool causal);

    /// <summary>Validated, non-empty <see cref="SoftmaxBackward"/>.</summary>
    protected abstract void SoftmaxBackwardCore(Tensor dInput, Tensor output, Tensor dOutput, bool causal);

    /// <summary>Validated, non-empty <see cref="LayerNormForward"/>.</summary>
    protected abstract void LayerNormForwardCore(Tensor output, Tensor mean, Tensor rstd, Tensor input, Tensor weight, Tensor bias, float epsilon);

    /// <summary>Validated, non-empty <see cref="LayerNormBackward"/>.</summary>
    protected abstract void LayerNormBackwardCore(Tensor dInput, Tensor dWeight, Tensor dBias, Tensor dOutput, Tensor input, Tensor weight,
        Tensor mean, Tensor rstd);

    /// <summary>Validated, non-empty <see cref="CrossEntropyForward"/> (every target &lt; V).</summary>
    protected abstract void CrossEntropyForwardCore(Tensor losses, Tensor probs, Tensor logits, Tensor targets);

    /// <summary>Validated, non-empty <see cref="CrossEntropyBackward"/> (every target &lt; V).</summary>
    protected abstract void CrossEntropyBackwardCore(Tensor dLogits, Tensor dLosses, Tensor probs, Tensor targets);

    /// <summary>Validated, non-empty <see cref="EmbeddingForward(Tensor, Tensor, Tensor)"/> (every id in range).</summary>
    protected abstract void EmbeddingForwardCore(Tensor output, Tensor ids, Tensor table);

    /// <summary>Validated, non-empty <see cref="EmbeddingBackward"/> (every id in range).</summary>
    protected abstract void EmbeddingBackwardCore(Tensor dTable, Tensor dOutput, Tensor ids);

    /// <summary>Validated, non-empty <see cref="AdamWStep"/>.</summary>
    protected abstract void AdamWStepCore(Tensor parameters, Tensor gradients, Tensor m, Tensor v, float learningRate, float beta1,
        float beta2, float epsilon, float weightDecay, int step);
}

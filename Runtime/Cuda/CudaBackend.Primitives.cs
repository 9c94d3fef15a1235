namespace LoraRuntime.Cuda;

// The cores of the fused primitives: each passes its tensors' device addresses and sizes to its kernel of native/ (the
// argument order of each kernel's signature) and launches it on the stream. Nothing here allocates.
public sealed unsafe partial class CudaBackend
{
    /// <inheritdoc/>
    protected override long FindIdOutsideCore(Tensor ids, int min, int max, out int value)
    {
        using var gate = Enter();
        if (max < min)
        {
            value = ReadElement<int>(ids, 0);
            return 0;
        }
        ResetScanResult();
        nint first = _scratch, data = ids.Pointer;
        long n = ids.Length;
        void** args = stackalloc void*[] { &first, &data, &min, &max, &n };
        Launch(CudaKernel.FindIdOutside, BlocksFor(n), args);
        long at = ReadScanResult();
        value = at >= 0 ? ReadElement<int>(ids, at) : 0;
        return at;
    }

    /// <inheritdoc/>
    protected override void AddCore(Tensor output, Tensor a, Tensor b) => Binary(CudaKernel.Add, output, a, b);

    /// <inheritdoc/>
    protected override void DivideCore(Tensor output, Tensor a, Tensor b) => Binary(CudaKernel.Divide, output, a, b);

    /// <inheritdoc/>
    protected override void ScaleCore(Tensor output, Tensor input, float scale)
    {
        using var gate = Enter();
        nint o = output.Pointer, i = input.Pointer;
        long n = output.Length;
        void** args = stackalloc void*[] { &o, &i, &scale, &n };
        Launch(CudaKernel.Scale, BlocksFor(n), args);
    }

    /// <inheritdoc/>
    protected override void AxpyCore(Tensor y, float alpha, Tensor x)
    {
        using var gate = Enter();
        nint yp = y.Pointer, xp = x.Pointer;
        long n = y.Length;
        void** args = stackalloc void*[] { &yp, &alpha, &xp, &n };
        Launch(CudaKernel.Axpy, BlocksFor(n), args);
    }

    /// <inheritdoc/>
    protected override void GeluForwardCore(Tensor output, Tensor input)
    {
        using var gate = Enter();
        nint o = output.Pointer, i = input.Pointer;
        long n = output.Length;
        void** args = stackalloc void*[] { &o, &i, &n };
        Launch(CudaKernel.GeluForward, BlocksFor(n), args);
    }

    /// <inheritdoc/>
    protected override void GeluBackwardCore(Tensor dInput, Tensor input, Tensor dOutput) => Binary(CudaKernel.GeluBackward, dInput, input, dOutput);

    /// <inheritdoc/>
    protected override void SoftmaxForwardCore(Tensor output, Tensor input, bool causal) =>
        Softmax(CudaKernel.SoftmaxForward, output, input, null, causal);

    /// <inheritdoc/>
    protected override void SoftmaxBackwardCore(Tensor dInput, Tensor output, Tensor dOutput, bool causal) =>
        Softmax(CudaKernel.SoftmaxBackward, dInput, output, dOutput, causal);

    /// <inheritdoc/>
    protected override void LayerNormForwardCore(Tensor output, Tensor mean, Tensor rstd, Tensor input, Tensor weight, Tensor bias, float epsilon)
    {
        using var gate = Enter();
        nint o = output.Pointer, mu = mean.Pointer, r = rstd.Pointer, x = input.Pointer, w = weight.Pointer, b = bias.Pointer;
        int channels = input.Shape.Last;
        void** args = stackalloc void*[] { &o, &mu, &r, &x, &w, &b, &channels, &epsilon };
        Launch(CudaKernel.LayerNormForward, RowBlocks(input), args);
    }

    /// <inheritdoc/>
    protected override void LayerNormBackwardCore(Tensor dInput, Tensor dWeight, Tensor dBias, Tensor dOutput, Tensor input, Tensor weight,
        Tensor mean, Tensor rstd)
    {
        using var gate = Enter();
        nint dx = dInput.Pointer, dw = dWeight.Pointer, db = dBias.Pointer, dy = dOutput.Pointer, x = input.Pointer, w = weight.Pointer;
        nint mu = mean.Pointer, r = rstd.Pointer;
        int channels = input.Shape.Last;
        long rows = input.Shape.Rows;
        void** inputArgs = stackalloc void*[] { &dx, &dy, &x, &w, &mu, &r, &channels };
        Launch(CudaKernel.LayerNormBackwardInput, RowBlocks(input), inputArgs);
        void** parameterArgs = stackalloc void*[] { &dw, &db, &dy, &x, &mu, &r, &rows, &channels };
        Launch(CudaKernel.LayerNormBackwardParameters, BlocksForColumns(channels), parameterArgs);
    }

    /// <inheritdoc/>
    protected override void CrossEntropyForwardCore(Tensor losses, Tensor probs, Tensor logits, Tensor targets)
    {
        using var gate = Enter();
        nint l = losses.Pointer, p = probs.Pointer, z = logits.Pointer, t = targets.Pointer;
        int classes = logits.Shape.Last;
        void** args = stackalloc void*[] { &l, &p, &z, &t, &classes };
        Launch(CudaKernel.CrossEntropyForward, RowBlocks(logits), args);
    }

    /// <inheritdoc/>
    protected override void CrossEntropyBackwardCore(Tensor dLogits, Tensor dLosses, Tensor probs, Tensor targets)
    {
        using var gate = Enter();
        nint dz = dLogits.Pointer, dl = dLosses.Pointer, p = probs.Pointer, t = targets.Pointer;
        int classes = probs.Shape.Last;
        void** args = stackalloc void*[] { &dz, &dl, &p, &t, &classes };
        Launch(CudaKernel.CrossEntropyBackward, RowBlocks(probs), args);
    }

    /// <inheritdoc/>
    protected override void EmbeddingForwardCore(Tensor output, Tensor ids, Tensor table)
    {
        using var gate = Enter();
        nint o = output.Pointer, i = ids.Pointer, w = table.Pointer;
        long count = ids.Length;
        int channels = table.Shape.Last;
        void** args = stackalloc void*[] { &o, &i, &w, &count, &channels };
        Launch(CudaKernel.EmbeddingForward, BlocksFor(count * channels), args);
    }

    /// <inheritdoc/>
    protected override void EmbeddingBackwardCore(Tensor dTable, Tensor dOutput, Tensor ids)
    {
        using var gate = Enter();
        nint dw = dTable.Pointer, dy = dOutput.Pointer, i = ids.Pointer;
        long count = ids.Length;
        int channels = dTable.Shape.Last;
        void** args = stackalloc void*[] { &dw, &dy, &i, &count, &channels };
        Launch(CudaKernel.EmbeddingBackward, BlocksForColumns(channels), args);
    }

    /// <inheritdoc/>
    protected override void AdamWStepCore(Tensor parameters, Tensor gradients, Tensor m, Tensor v, float learningRate, float beta1,
        float beta2, float epsilon, float weightDecay, int step)
    {
        using var gate = Enter();
        // The same folded scalars as the CPU's AdamWOp, so both round alike.
        float decay = (float)(1 - (double)learningRate * weightDecay);
        float oneMinusBeta1 = 1 - beta1, oneMinusBeta2 = 1 - beta2;
        float stepSize = (float)(learningRate / (1 - Math.Pow(beta1, step)));
        float inverseSqrtCorrection2 = (float)(1 / Math.Sqrt(1 - Math.Pow(beta2, step)));
        nint p = parameters.Pointer, g = gradients.Pointer, mp = m.Pointer, vp = v.Pointer;
        long n = parameters.Length;
        void** args = stackalloc void*[]
        {
            &p, &g, &mp, &vp, &decay, &beta1, &oneMinusBeta1, &beta2, &oneMinusBeta2, &stepSize, &inverseSqrtCorrection2, &epsilon, &n,
        };
        Launch(CudaKernel.AdamWStep, BlocksFor(n), args);
    }

    /// <summary>A kernel (out, a, b, n) over equal lengths.</summary>
    private void Binary(CudaKernel kernel, Tensor output, Tensor a, Tensor b)
    {
        using var gate = Enter();
        nint o = output.Pointer, ap = a.Pointer, bp = b.Pointer;
        long n = output.Length;
        void** args = stackalloc void*[] { &o, &ap, &bp, &n };
        Launch(kernel, BlocksFor(n), args);
    }

    /// <inheritdoc/>
    protected override void SoftmaxRowsCore(Tensor buffer, long offset, int rows, int cols)
    {
        using var gate = Enter();
        nint at = buffer.Pointer + (nint)(offset * sizeof(float));
        int queries = 1, isCausal = 0;
        void** args = stackalloc void*[] { &at, &at, &cols, &queries, &isCausal };
        Launch(CudaKernel.SoftmaxForward, checked((uint)rows), args);
    }

    /// <summary>Softmax forward (first, second = output, input) or backward (dInput, output, dOutput), one block per row.</summary>
    private void Softmax(CudaKernel kernel, Tensor first, Tensor second, Tensor? third, bool causal)
    {
        using var gate = Enter();
        nint a = first.Pointer, b = second.Pointer, c = third?.Pointer ?? 0;
        int cols = second.Shape.Last, queries = causal ? second.Shape[-2] : 1, isCausal = causal ? 1 : 0;
        void** forward = stackalloc void*[] { &a, &b, &cols, &queries, &isCausal };
        void** backward = stackalloc void*[] { &a, &b, &c, &cols, &queries, &isCausal };
        Launch(kernel, RowBlocks(second), third is null ? forward : backward);
    }

    /// <summary>One block per row (all dimensions but the last).</summary>
    private static uint RowBlocks(Tensor matrix) => checked((uint)matrix.Shape.Rows);
}

namespace LoraRuntime.Cuda;

// The cores of the Llama-family operations (Backend.Transformer): native/transformer.cu.
public sealed unsafe partial class CudaBackend
{
    /// <inheritdoc/>
    protected override void RmsNormForwardCore(Tensor output, Tensor rstd, Tensor input, Tensor weight, float epsilon)
    {
        using var gate = Enter();
        nint o = output.Pointer, r = rstd.Pointer, x = input.Pointer, w = weight.Pointer;
        int channels = input.Shape.Last;
        void** args = stackalloc void*[] { &o, &r, &x, &w, &channels, &epsilon };
        Launch(CudaKernel.RmsNormForward, checked((uint)input.Shape.Rows), args);
    }

    /// <inheritdoc/>
    protected override void RmsNormBackwardCore(Tensor dInput, Tensor dWeight, Tensor dOutput, Tensor input, Tensor weight, Tensor rstd)
    {
        using var gate = Enter();
        nint dx = dInput.Pointer, dw = dWeight.Pointer, dy = dOutput.Pointer, x = input.Pointer, w = weight.Pointer, r = rstd.Pointer;
        int channels = input.Shape.Last;
        long rows = input.Shape.Rows;
        void** inputArgs = stackalloc void*[] { &dx, &dy, &x, &w, &r, &channels };
        Launch(CudaKernel.RmsNormBackwardInput, checked((uint)rows), inputArgs);
        void** weightArgs = stackalloc void*[] { &dw, &dy, &x, &r, &rows, &channels };
        Launch(CudaKernel.RmsNormBackwardWeight, BlocksForColumns(channels), weightArgs);
    }

    /// <inheritdoc/>
    protected override void GatedSiluForwardCore(Tensor output, Tensor input)
    {
        using var gate = Enter();
        nint o = output.Pointer, i = input.Pointer;
        long rows = output.Shape.Rows;
        int width = output.Shape.Last;
        void** args = stackalloc void*[] { &o, &i, &rows, &width };
        Launch(CudaKernel.GatedSiluForward, BlocksFor(rows * width), args);
    }

    /// <inheritdoc/>
    protected override void GatedSiluBackwardCore(Tensor dInput, Tensor input, Tensor dOutput)
    {
        using var gate = Enter();
        nint dx = dInput.Pointer, x = input.Pointer, dy = dOutput.Pointer;
        long rows = dOutput.Shape.Rows;
        int width = dOutput.Shape.Last;
        void** args = stackalloc void*[] { &dx, &x, &dy, &rows, &width };
        Launch(CudaKernel.GatedSiluBackward, BlocksFor(rows * width), args);
    }

    /// <inheritdoc/>
    protected override void RotaryCore(Tensor rows, Tensor positions, int heads, int headSize, Tensor cos, Tensor sin, bool inverse)
    {
        using var gate = Enter();
        nint x = rows.Pointer, p = positions.Pointer, c = cos.Pointer, s = sin.Pointer;
        long count = rows.Shape.Rows;
        int stride = rows.Shape.Last, half = cos.Shape[1], flag = inverse ? 1 : 0;
        void** args = stackalloc void*[] { &x, &p, &c, &s, &count, &stride, &heads, &headSize, &half, &flag };
        Launch(CudaKernel.Rotary, BlocksFor(count * heads * half), args);
    }

    /// <inheritdoc/>
    protected override void HeadRmsNormForwardCore(Tensor rows, Tensor rstd, int firstHead, int heads, int headSize, Tensor weight, float epsilon)
    {
        using var gate = Enter();
        nint x = rows.Pointer, r = rstd.Pointer, w = weight.Pointer;
        long stride = rows.Shape.Last;
        void** args = stackalloc void*[] { &x, &r, &w, &stride, &firstHead, &heads, &headSize, &epsilon };
        Launch(CudaKernel.HeadRmsNormForward, checked((uint)(rows.Shape.Rows * heads)), args);
    }

    /// <inheritdoc/>
    protected override void HeadRmsNormBackwardCore(Tensor dRows, Tensor dWeight, Tensor input, Tensor weight, Tensor rstd, int firstHead, int heads,
        int headSize)
    {
        using var gate = Enter();
        nint dx = dRows.Pointer, dw = dWeight.Pointer, x = input.Pointer, w = weight.Pointer, r = rstd.Pointer;
        long stride = input.Shape.Last, items = input.Shape.Rows * heads;
        void** weightArgs = stackalloc void*[] { &dw, &dx, &x, &r, &stride, &items, &firstHead, &heads, &headSize };
        Launch(CudaKernel.HeadRmsNormBackwardWeight, BlocksForColumns(headSize), weightArgs);
        void** inputArgs = stackalloc void*[] { &dx, &x, &w, &r, &stride, &firstHead, &heads, &headSize };
        Launch(CudaKernel.HeadRmsNormBackwardInput, checked((uint)items), inputArgs);
    }
}

namespace LoraRuntime.Cuda;

// The cores of the layer operations (Backend.LayerOps) on the kernels of native/rows.cu, heads.cu, dropout.cu and
// scan.cu. Nothing here allocates.
public sealed unsafe partial class CudaBackend
{
    private const int AddPerColumn = 0, MultiplyPerColumn = 1, MultiplyPerRow = 2; // rows.cu's ROWS_* kinds

    /// <inheritdoc/>
    protected override void AddBiasCore(Tensor output, Tensor input, Tensor bias) => RowBroadcast(output, input, bias, AddPerColumn);

    /// <inheritdoc/>
    protected override void ScaleColumnsCore(Tensor output, Tensor input, Tensor scale) => RowBroadcast(output, input, scale, MultiplyPerColumn);

    /// <inheritdoc/>
    protected override void ScaleRowsCore(Tensor output, Tensor input, Tensor scale) => RowBroadcast(output, input, scale, MultiplyPerRow);

    /// <inheritdoc/>
    protected override void ColumnSumCore(Tensor output, Tensor a, Tensor? b)
    {
        using var gate = Enter();
        nint o = output.Pointer, ap = a.Pointer, bp = b?.Pointer ?? 0;
        long rows = a.Shape.Rows;
        int cols = a.Shape.Last;
        void** args = stackalloc void*[] { &o, &ap, &bp, &rows, &cols };
        Launch(CudaKernel.ColumnSum, BlocksForColumns(cols), args);
    }

    /// <inheritdoc/>
    protected override void RowNormsCore(Tensor output, Tensor input)
    {
        using var gate = Enter();
        nint o = output.Pointer, i = input.Pointer;
        int cols = input.Shape.Last;
        void** args = stackalloc void*[] { &o, &i, &cols };
        Launch(CudaKernel.RowNorms, RowBlocks(input), args);
    }

    /// <inheritdoc/>
    protected override void HeadsCore(Tensor heads, Tensor rows, int column, bool split)
    {
        using var gate = Enter();
        nint h = heads.Pointer, r = rows.Pointer;
        int time = heads.Shape[2], headCount = heads.Shape[1], headSize = heads.Shape[3], width = rows.Shape.Last, isSplit = split ? 1 : 0;
        long total = heads.Length;
        void** args = stackalloc void*[] { &h, &r, &time, &headCount, &headSize, &width, &column, &isSplit, &total };
        Launch(CudaKernel.Heads, BlocksFor(total), args);
    }

    /// <inheritdoc/>
    protected override void DropoutCore(Tensor output, Tensor input, float probability, ulong seed, ulong firstIndex, bool accumulate)
    {
        using var gate = Enter();
        nint o = output.Pointer, i = input.Pointer;
        uint threshold = DropoutThreshold(probability);
        float keepScale = 1 / (1 - probability);
        int isAccumulate = accumulate ? 1 : 0;
        long n = output.Length;
        void** args = stackalloc void*[] { &o, &i, &seed, &firstIndex, &threshold, &keepScale, &isAccumulate, &n };
        Launch(CudaKernel.Dropout, BlocksFor(n), args);
    }

    /// <inheritdoc/>
    protected override long FindNonFiniteCore(Tensor input) => FindNonFiniteCore(input, out _);

    /// <inheritdoc/>
    protected override long FindNonFiniteCore(Tensor tensor, out float value)
    {
        using var gate = Enter();
        ResetScanResult();
        nint first = _scratch, data = tensor.Pointer;
        long n = tensor.Length;
        void** args = stackalloc void*[] { &first, &data, &n };
        Launch(CudaKernel.FindNonFinite, BlocksFor(n), args);
        long at = ReadScanResult();
        value = at >= 0 ? ReadElement<float>(tensor, at) : 0;
        return at;
    }

    private void RowBroadcast(Tensor output, Tensor input, Tensor vector, int kind)
    {
        using var gate = Enter();
        nint o = output.Pointer, i = input.Pointer, v = vector.Pointer;
        long rows = input.Shape.Rows;
        int cols = input.Shape.Last;
        void** args = stackalloc void*[] { &o, &i, &v, &rows, &cols, &kind };
        Launch(CudaKernel.RowBroadcast, BlocksFor(rows * cols), args);
    }
}

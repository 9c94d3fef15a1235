namespace LoraRuntime.Layers.Inference;

/// <summary>
/// A [maxRows, width] pool tensor with cached views of its first n rows: element-wise operations get a view of exactly
/// the rows in use, GEMMs address the block through offsets. A view is built once per n, so steady steps allocate nothing.
/// </summary>
internal sealed class RowBuffer : IDisposable
{
    private readonly Tensor?[] _views;

    public RowBuffer(Backend backend, int maxRows, int width, DType dtype = DType.F32)
    {
        Width = width;
        Block = backend.Allocate(dtype, new Shape(maxRows, width));
        if (dtype == DType.F32) backend.Fill(Block, 0f);
        _views = new Tensor?[maxRows + 1];
    }

    /// <summary>The elements per row.</summary>
    public int Width { get; }

    /// <summary>The whole buffer.</summary>
    public Tensor Block { get; }

    /// <summary>The first <paramref name="rows"/> rows: [rows, width], or [rows] when width is 1.</summary>
    public Tensor Rows(int rows) => _views[rows] ??= Block.View(0, Width == 1 ? new Shape(rows) : new Shape(rows, Width));

    public void Dispose() => Block.Dispose();
}

namespace LoraRuntime;

/// <summary>
/// A K×N matrix B held in the layout its backend's GEMM reads fastest, for many products C = α·A·B + β·C with a
/// changing A: an inference projection's weight, packed once at load as oneDNN and MKL pre-pack weights. On the CPU,
/// B is kept as panels of the micro-kernel's NR columns, each K×NR floats contiguous and the last zero-padded, so a
/// product streams B sequentially from memory and never packs it again; elsewhere (CUDA) B is kept row-major as given.
/// Made by <see cref="Backend.PackMatrix"/>, refreshed in place by <see cref="Backend.Repack"/>, used by
/// <see cref="Backend.GemmPacked"/>. Disposing returns the storage to the backend's pool.
/// </summary>
public sealed class PackedMatrix : IDisposable
{
    internal PackedMatrix(Tensor storage, int rows, int columns, int panelWidth)
    {
        Storage = storage;
        Rows = rows;
        Columns = columns;
        PanelWidth = panelWidth;
    }

    /// <summary>K: rows of B.</summary>
    public int Rows { get; }

    /// <summary>N: columns of B.</summary>
    public int Columns { get; }

    /// <summary>Bytes of the backend's memory the matrix holds (with any padding of the last panel).</summary>
    public long Bytes => Storage.ByteLength;

    /// <summary>The backend that packed it.</summary>
    public Backend Backend => Storage.Backend;

    /// <summary>True once disposed.</summary>
    public bool IsDisposed => Storage.IsDisposed;

    /// <summary>The backend's storage: [K, N] row-major when <see cref="PanelWidth"/> is 0, else ⌈N / PanelWidth⌉ panels of K × PanelWidth.</summary>
    internal Tensor Storage { get; }

    /// <summary>Columns per panel; 0 for row-major storage.</summary>
    internal int PanelWidth { get; }

    /// <inheritdoc/>
    public override string ToString() => $"PackedMatrix [{Rows}, {Columns}]" + (PanelWidth > 0 ? $" in panels of {PanelWidth}" : "");

    /// <summary>Returns the storage to the pool.</summary>
    public void Dispose() => Storage.Dispose();
}

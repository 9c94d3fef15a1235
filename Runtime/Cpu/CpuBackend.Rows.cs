namespace LoraRuntime.Cpu;

public sealed unsafe partial class CpuBackend
{
    /// <inheritdoc/>
    protected override void CopyRowsCore(Tensor destination, long destinationOffset, int destinationStride, Tensor source, long sourceOffset,
        int sourceStride, int rows, int columns)
    {
        int size = source.DType.SizeInBytes();
        byte* d = (byte*)destination.Pointer + destinationOffset * size, s = (byte*)source.Pointer + sourceOffset * size;
        long bytes = (long)columns * size;
        for (int i = 0; i < rows; i++)
            Buffer.MemoryCopy(s + (long)i * sourceStride * size, d + (long)i * destinationStride * size, bytes, bytes);
    }
}

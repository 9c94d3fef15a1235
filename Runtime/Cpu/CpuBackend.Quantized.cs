using LoraRuntime.Cpu.Primitives;

namespace LoraRuntime.Cpu;

public sealed unsafe partial class CpuBackend
{
    /// <inheritdoc/>
    protected override void DequantizeCore(Tensor destination, QuantizedMatrix source, int firstRow, int rows) =>
        _quantized.Decode(F(destination), source, firstRow, rows);

    /// <inheritdoc/>
    protected override void GemmQuantizedCore(Transpose opW, int m, float alpha, Tensor a, long offsetA, int lda, QuantizedMatrix w,
        float beta, Tensor c, long offsetC, int ldc, ActivationPrecision activations) =>
        _quantized.Run(opW, m, alpha, a, offsetA, lda, w, beta, c, offsetC, ldc, activations);

    /// <inheritdoc/>
    protected override void EmbeddingForwardCore(Tensor output, Tensor ids, QuantizedMatrix table)
    {
        var op = new QuantizedEmbeddingOp
        {
            Output = F(output), Table = (byte*)table.Storage.Pointer, RowBytes = table.RowBytes, Ids = (int*)ids.Pointer,
            Channels = table.Columns, Format = table.Format,
        };
        Rows(op, output);
    }
}

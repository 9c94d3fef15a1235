using LoraRuntime.Quantization;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Quantization;

/// <summary>
/// Products with a stored weight (<see cref="Backend.GemmQuantized"/>), the decoder and the stored-table embedding,
/// written once for every backend against a float64 reference built from the dequantized weights: every format, both
/// operand orders, row counts on both sides of the row-kernel limit and of every tile height of the integer kernels,
/// odd output widths, strides, offsets, α and β. With <see cref="ActivationPrecision.Q8_0"/> a Q8_0 or Q4_0 forward
/// product quantizes the activations per block as llama.cpp does, and with <see cref="ActivationPrecision.BFloat16"/> a
/// BF16 one rounds them to bfloat16; its reference rounds them the same way, so the integer and bfloat16 kernels are
/// held to float32 rounding too.
/// </summary>
public abstract class QuantizedGemmConformance
{
    protected abstract Backend Backend { get; }

    /// <summary>‖Δ‖/‖ref‖ a product may reach: float32 rounding, unless a backend rounds the operands further.</summary>
    protected virtual double Tolerance => 1e-5;

    /// <summary>Whether the backend rounds activations to Q8_0 when asked (<see cref="ActivationPrecision.Q8_0"/>); CUDA takes them as given.</summary>
    protected virtual bool QuantizesActivations => true;

    public static TheoryData<WeightFormat> Formats => new() { WeightFormat.F16, WeightFormat.BF16, WeightFormat.Q8_0, WeightFormat.Q4_0, WeightFormat.NF4 };

    /// <summary>A K valid for the format: a multiple of its block (64 for NF4), odd for the float formats.</summary>
    private static int Depth(WeightFormat format, int blocks) => format switch
    {
        WeightFormat.F16 or WeightFormat.BF16 => 64 * blocks + 7,
        _ => format.BlockValues() * blocks,
    };

    public static TheoryData<WeightFormat, ActivationPrecision> FormatsAndPrecisions()
    {
        var data = new TheoryData<WeightFormat, ActivationPrecision>();
        foreach (var format in new[] { WeightFormat.F16, WeightFormat.BF16, WeightFormat.Q8_0, WeightFormat.Q4_0, WeightFormat.NF4 })
            foreach (var precision in new[] { ActivationPrecision.Float32, ActivationPrecision.Q8_0, ActivationPrecision.BFloat16 }) data.Add(format, precision);
        return data;
    }

    [Theory]
    [MemberData(nameof(FormatsAndPrecisions))]
    public void ForwardProductMatchesFloat64OfTheDequantizedWeight(WeightFormat format, ActivationPrecision activations)
    {
        // Row counts: the row kernels (≤ 8), then tiles of 6 rows with every remainder (9 = 6 + 3, 12, 13, 17, 33, 70).
        foreach (int m in new[] { 1, 2, 3, 4, 5, 8, 9, 12, 13, 17, 33 })
            foreach (var (n, blocks) in new[] { (1, 1), (7, 3), (33, 2), (130, 9) })
                Check(format, Transpose.Yes, m, n, Depth(format, blocks), alpha: 1f, beta: 0f, pad: 0, offset: 0, seed: m * 101 + n * 7 + blocks, activations);
        // Whole panels over several depth blocks, every depth a multiple of 8 (a decoder's register-transposed blocks),
        // and a partial last panel.
        foreach (int m in new[] { 9, 33, 70 })
            Check(format, Transpose.Yes, m, 100, 832, alpha: 1f, beta: 0f, pad: 0, offset: 0, seed: m * 3 + 1, activations);
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void InputGradientProductMatchesFloat64(WeightFormat format)
    {
        foreach (int m in new[] { 1, 3, 9, 40 })
            foreach (var (n, blocks) in new[] { (1, 1), (7, 3), (130, 2) })
                Check(format, Transpose.No, m, n, Depth(format, blocks), alpha: 1f, beta: 0f, pad: 0, offset: 0, seed: m * 13 + n + blocks);
    }

    [Theory]
    [InlineData(WeightFormat.Q8_0, 0.5f, 2f)]
    [InlineData(WeightFormat.Q4_0, -1.5f, 1f)]
    [InlineData(WeightFormat.NF4, 2f, -0.25f)]
    [InlineData(WeightFormat.BF16, 1f, 1f)]
    [InlineData(WeightFormat.F16, 0.25f, 0.5f)]
    public void AlphaBetaStridesAndOffsets(WeightFormat format, float alpha, float beta)
    {
        foreach (var activations in new[] { ActivationPrecision.Float32, ActivationPrecision.Q8_0, ActivationPrecision.BFloat16 })
            foreach (var opW in new[] { Transpose.Yes, Transpose.No })
                foreach (int m in new[] { 1, 4, 12 })
                    Check(format, opW, m, 37, Depth(format, 2), alpha, beta, pad: 5, offset: 11, seed: m + (int)opW, activations);
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void DequantizeAndEmbeddingDecodeTheStoredRows(WeightFormat format)
    {
        int rows = 11, k = Depth(format, 3);
        var values = Reference.Random(rows * k, 5);
        using var w = Backend.CreateQuantized(format, rows, k);
        Backend.QuantizeRows(w, 0, values);
        var encoded = new byte[rows * w.RowBytes];
        Backend.ReadEncodedRows(w, 0, encoded);
        var expected = new float[rows * k];
        WeightRows.Decode(format, encoded, expected);

        using var dense = Backend.Allocate(rows, k);
        Backend.Dequantize(dense, w);
        Assert.Equal(expected, dense.ToArray());
        using var tail = Backend.Allocate(3, k);
        Backend.Dequantize(tail, w, firstRow: 8);
        Assert.Equal(expected.AsSpan(8 * k).ToArray(), tail.ToArray());

        int[] ids = [3, 0, 10, 3, 7];
        using var idTensor = Backend.Allocate(DType.I32, new Shape(1, ids.Length));
        idTensor.CopyFrom(ids);
        using var output = Backend.Allocate(1, ids.Length, k);
        Backend.EmbeddingForward(output, idTensor, w);
        var got = output.ToArray();
        for (int i = 0; i < ids.Length; i++) Assert.Equal(expected.AsSpan(ids[i] * k, k), got.AsSpan(i * k, k));
    }

    /// <summary>
    /// The K-quants (read from GGUF files, never written): random super-blocks with finite F16 scales, decoded by the
    /// backend exactly as <see cref="KQuantBlocks"/> decodes them, and multiplied both ways against float64 of that.
    /// </summary>
    [Theory]
    [InlineData(WeightFormat.Q4_K)]
    [InlineData(WeightFormat.Q6_K)]
    public void KQuantRowsDecodeAndMultiply(WeightFormat format)
    {
        const int rows = 9, k = 512;
        using var w = Backend.CreateQuantized(format, rows, k);
        var bytes = new byte[rows * w.RowBytes];
        new Random(11).NextBytes(bytes);
        int blockBytes = format.BlockBytes();
        for (int b = 0; b < bytes.Length; b += blockBytes)
        {
            // F16 d (and Q4_K's dmin) between 2⁻¹⁰ and 2⁻⁵: exponent fields 5…9, any sign and mantissa.
            foreach (int at in format == WeightFormat.Q4_K ? new[] { 0, 2 } : new[] { 208 })
                bytes[b + at + 1] = (byte)(bytes[b + at + 1] & 0x83 | (0x05 + bytes[b + at] % 5) << 2);
        }
        Backend.WriteEncodedRows(w, 0, bytes);
        var expected = new float[rows * k];
        WeightRows.Decode(format, bytes, expected);
        Assert.All(expected, v => Assert.True(float.IsFinite(v)));
        using var dense = Backend.Allocate(rows, k);
        Backend.Dequantize(dense, w);
        Assert.Equal(expected, dense.ToArray());

        foreach (var opW in new[] { Transpose.Yes, Transpose.No })
        {
            int m = 5, inner = opW == Transpose.Yes ? k : rows, outer = opW == Transpose.Yes ? rows : k;
            var aValues = Reference.Random(m * inner, 12);
            var want = new double[m * outer];
            for (int i = 0; i < m; i++)
                for (int j = 0; j < outer; j++)
                {
                    double sum = 0;
                    for (int p = 0; p < inner; p++) sum += aValues[i * inner + p] * (double)(opW == Transpose.Yes ? expected[j * k + p] : expected[p * k + j]);
                    want[i * outer + j] = sum;
                }
            using var a = Backend.FromArray(aValues, m, inner);
            using var c = Backend.Allocate(m, outer);
            Backend.MatMulQuantized(c, a, w, opW);
            double error = Reference.RelativeError(c.ToArray(), want);
            Assert.True(error <= Tolerance, $"{format} op {opW}: ‖Δ‖/‖ref‖ = {error:E2}");
        }
    }

    [Fact]
    public void EncodedRowsWrittenAsAFileHoldsThemReadBackUnchanged()
    {
        using var w = Backend.CreateQuantized(WeightFormat.Q4_0, 4, 64);
        var bytes = new byte[4 * w.RowBytes];
        new Random(3).NextBytes(bytes);
        for (int b = 0; b < bytes.Length; b += 18) bytes[b + 1] = 0x3C; // finite F16 scales (about 1.0)
        Backend.WriteEncodedRows(w, 0, bytes);
        var back = new byte[2 * w.RowBytes];
        Backend.ReadEncodedRows(w, 2, back);
        Assert.Equal(bytes.AsSpan(2 * (int)w.RowBytes).ToArray(), back);
    }

    [Fact]
    public void BadArgumentsNameTheArgument()
    {
        using var w = Backend.CreateQuantized(WeightFormat.Q8_0, 8, 64);
        using var a = Backend.Allocate(2, 64);
        using var c = Backend.Allocate(2, 8);
        Assert.Equal("format", Assert.Throws<ArgumentException>(() => Backend.CreateQuantized(WeightFormat.F32, 2, 64)).ParamName);
        Assert.Contains("whole blocks of 32", Assert.Throws<ArgumentException>(() => Backend.CreateQuantized(WeightFormat.Q4_0, 2, 48)).Message);
        Assert.Contains("whole blocks of 64", Assert.Throws<ArgumentException>(() => Backend.CreateQuantized(WeightFormat.NF4, 2, 96)).Message);
        Assert.Equal("a", Assert.Throws<ArgumentException>(() => Backend.MatMulQuantized(c, c, w)).ParamName);
        Assert.Equal("c", Assert.Throws<ArgumentException>(() => Backend.MatMulQuantized(a, a, w)).ParamName);
        Assert.Equal("a", Assert.Throws<ArgumentException>(() => Backend.GemmQuantized(Transpose.Yes, 3, 1f, a, 0, 64, w, 0f, c, 0, 8)).ParamName);
        Assert.Equal("values", Assert.Throws<ArgumentException>(() => Backend.QuantizeRows(w, 0, new float[65])).ParamName);
        Assert.Equal("firstRow", Assert.Throws<ArgumentOutOfRangeException>(() => Backend.QuantizeRows(w, 7, new float[128])).ParamName);
        using var ids = Backend.Allocate(DType.I32, new Shape(1, 1));
        ids.CopyFrom([8]);
        using var row = Backend.Allocate(1, 1, 64);
        Assert.Contains("0 ≤ id < 8", Assert.Throws<ArgumentException>(() => Backend.EmbeddingForward(row, ids, w)).Message);
        w.Dispose();
        Assert.Throws<ObjectDisposedException>(() => Backend.MatMulQuantized(c, a, w));
    }

    private void Check(WeightFormat format, Transpose opW, int m, int n, int k, float alpha, float beta, int pad, int offset, int seed,
        ActivationPrecision activations = ActivationPrecision.Float32)
    {
        // W [n, k] stored; op(W) = Wᵀ [k, n] for Yes (A has k columns, C n), W itself for No (A has n, C k).
        int inner = opW == Transpose.Yes ? k : n, outer = opW == Transpose.Yes ? n : k;
        int lda = inner + pad, ldc = outer + pad;
        var wValues = Reference.Random(n * k, seed);
        var aValues = Reference.Random(offset + (m - 1) * lda + inner, seed + 1);
        var cValues = Reference.Random(offset + (m - 1) * ldc + outer, seed + 2);
        using var w = Backend.CreateQuantized(format, n, k);
        Backend.QuantizeRows(w, 0, wValues);
        var encoded = new byte[n * w.RowBytes];
        Backend.ReadEncodedRows(w, 0, encoded);
        var dequantized = new float[n * k];
        WeightRows.Decode(format, encoded, dequantized);

        // The activations the kernel multiplies: llama.cpp's Q8_0 of each row for its integer path, else as given.
        bool integer = QuantizesActivations && activations == ActivationPrecision.Q8_0 && opW == Transpose.Yes
            && format is WeightFormat.Q8_0 or WeightFormat.Q4_0;
        var used = (float[])aValues.Clone();
        if (QuantizesActivations && activations == ActivationPrecision.BFloat16 && opW == Transpose.Yes && format == WeightFormat.BF16)
            for (int i = 0; i < m; i++)
                for (int p = 0; p < k; p++)
                {
                    ref float x = ref used[offset + i * lda + p];
                    x = BitConverter.UInt32BitsToSingle((uint)WeightRows.ToBFloat16(x) << 16);
                }
        if (integer)
        {
            var block = new byte[34];
            for (int i = 0; i < m; i++)
                for (int b = 0; b < k / 32; b++)
                {
                    var x = used.AsSpan(offset + i * lda + b * 32, 32);
                    QuantBlocks.Quantize(QuantFormat.Q8_0, x, block);
                    QuantBlocks.Dequantize(QuantFormat.Q8_0, block, x);
                }
        }
        var expected = new double[cValues.Length];
        for (int i = 0; i < cValues.Length; i++) expected[i] = cValues[i];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < outer; j++)
            {
                double sum = 0;
                for (int p = 0; p < inner; p++)
                {
                    double wv = opW == Transpose.Yes ? dequantized[j * k + p] : dequantized[p * k + j];
                    sum += used[offset + i * lda + p] * wv;
                }
                int at = offset + i * ldc + j;
                expected[at] = alpha * sum + (beta == 0 ? 0 : beta * (double)cValues[at]);
            }
        using var a = Backend.FromArray(aValues, aValues.Length);
        using var c = Backend.FromArray(cValues, cValues.Length);
        Backend.GemmQuantized(opW, m, alpha, a, offset, lda, w, beta, c, offset, ldc, activations);
        var got = c.ToArray();
        double error = Reference.RelativeError(got, expected);
        Assert.True(error <= Tolerance, $"{format} {activations} op {opW} m={m} n={n} k={k} α={alpha} β={beta}: ‖Δ‖/‖ref‖ = {error:E2}");
        // Nothing outside C's rows is touched.
        for (int i = 0; i < got.Length; i++)
        {
            int row = (i - offset) / ldc, col = (i - offset) % ldc;
            if (i < offset || row >= m || col >= outer) Assert.Equal(cValues[i], got[i]);
        }
    }
}

public sealed class CpuQuantizedGemmConformance : QuantizedGemmConformance
{
    private static readonly Backend s_backend = Gemm.CpuBackends.For(LoraRuntime.Cpu.Gemm.GemmKernelKind.Auto);
    protected override Backend Backend => s_backend;
}

/// <summary>
/// The AVX2 backend: its Q8_0 activations go through the AVX2 row kernels and, past their row limit, through A rounded
/// to Q8_0's values and the float product (the path of a CPU without AVX-512 VNNI).
/// </summary>
public sealed class CpuAvx2QuantizedGemmConformance : QuantizedGemmConformance
{
    public CpuAvx2QuantizedGemmConformance() => Gemm.CpuBackends.SkipUnlessSupported(LoraRuntime.Cpu.Gemm.GemmKernelKind.Avx2);
    private static readonly Backend s_backend = Gemm.CpuBackends.For(LoraRuntime.Cpu.Gemm.GemmKernelKind.Avx2);
    protected override Backend Backend => s_backend;
}

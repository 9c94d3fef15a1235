using LoraRuntime.Quantization;

namespace LoraRuntime;

public abstract partial class Backend
{
    /// <summary>
    /// Storage for a frozen weight W [<paramref name="rows"/>, <paramref name="columns"/>] in <paramref name="format"/>
    /// (F16, BF16, Q8_0, Q4_0 or NF4; each row a whole number of blocks), contents unspecified until written.
    /// </summary>
    public QuantizedMatrix CreateQuantized(WeightFormat format, int rows, int columns)
    {
        if (format == WeightFormat.F32)
            throw new ArgumentException("format: F32 weights are plain tensors; a QuantizedMatrix holds F16, BF16, Q8_0, Q4_0 or NF4", nameof(format));
        Check.Positive(rows, nameof(rows));
        long rowBytes = format.RowBytes(columns);
        if (rowBytes > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(columns), columns, $"columns: a row of {rowBytes} bytes is larger than a tensor dimension allows");
        return new QuantizedMatrix(Allocate(DType.U8, new Shape(rows, (int)rowBytes)), format, rows, columns);
    }

    /// <summary>
    /// Encodes float32 <paramref name="values"/> (whole rows of <see cref="QuantizedMatrix.Columns"/>) into rows
    /// <paramref name="firstRow"/>… of <paramref name="destination"/>. Load-time work: it may pass through host memory.
    /// </summary>
    public void QuantizeRows(QuantizedMatrix destination, int firstRow, ReadOnlySpan<float> values)
    {
        int rows = RowRange(destination, nameof(destination), firstRow, values.Length, destination?.Columns ?? 1, nameof(values), "values");
        if (rows == 0) return;
        using var view = destination!.Storage.View(firstRow * destination.RowBytes, new Shape(checked((int)(rows * destination.RowBytes))));
        if (IsHostMemory)
        {
            unsafe
            {
                WeightRows.Encode(destination.Format, values, new Span<byte>((void*)view.Pointer, checked((int)view.Length)));
            }
            return;
        }
        var encoded = new byte[view.Length];
        WeightRows.Encode(destination.Format, values, encoded);
        UploadCore(view, encoded);
    }

    /// <summary>
    /// Copies encoded rows (<see cref="QuantizedMatrix.RowBytes"/> bytes each, in the matrix's format: blocks as a
    /// GGUF file or <see cref="WeightRows.Encode"/> lays them out) into rows <paramref name="firstRow"/>… of <paramref name="destination"/>.
    /// </summary>
    public void WriteEncodedRows(QuantizedMatrix destination, int firstRow, ReadOnlySpan<byte> encoded)
    {
        int rows = RowRange(destination, nameof(destination), firstRow, encoded.Length, destination?.RowBytes ?? 1, nameof(encoded), "bytes");
        if (rows == 0) return;
        using var view = destination!.Storage.View(firstRow * destination.RowBytes, new Shape(encoded.Length));
        UploadCore(view, encoded);
    }

    /// <summary>Copies rows <paramref name="firstRow"/>… of <paramref name="source"/>, as encoded, into <paramref name="encoded"/> (whole rows).</summary>
    public void ReadEncodedRows(QuantizedMatrix source, int firstRow, Span<byte> encoded)
    {
        int rows = RowRange(source, nameof(source), firstRow, encoded.Length, source?.RowBytes ?? 1, nameof(encoded), "bytes");
        if (rows == 0) return;
        using var view = source!.Storage.View(firstRow * source.RowBytes, new Shape(encoded.Length));
        DownloadCore(view, encoded);
    }

    /// <summary>
    /// <paramref name="destination"/> (rows × <see cref="QuantizedMatrix.Columns"/> float32 elements, any shape) = rows
    /// <paramref name="firstRow"/>… of <paramref name="source"/>, decoded: the float weights a product with it uses.
    /// </summary>
    public void Dequantize(Tensor destination, QuantizedMatrix source, int firstRow = 0)
    {
        Check.Tensor(this, destination, DType.F32, nameof(destination));
        int rows = RowRange(source, nameof(source), firstRow, destination.Length, source?.Columns ?? 1, nameof(destination), "elements");
        if (rows > 0) DequantizeCore(destination, source!, firstRow, rows);
    }

    /// <summary>
    /// C = α·A·op(W) + β·C with a stored W [N′, K′]: with <paramref name="opW"/> = Yes (a projection's forward pass,
    /// y = x·Wᵀ) A is <paramref name="m"/> rows of K′ and C m rows of N′; with No (its input gradient, dx = dy·W) A is m
    /// rows of N′ and C m rows of K′. A and C are float32 at offsets with row strides (lda, ldc), as in
    /// <see cref="Gemm(in GemmProblem)"/>; W is converted to float32 inside the product and the sums are float32.
    /// <paramref name="activations"/> = <see cref="ActivationPrecision.Q8_0"/> or <see cref="ActivationPrecision.BFloat16"/>
    /// (the inference products, <see cref="ActivationPrecisions.ForInference"/>) lets a forward product with a Q8_0 or Q4_0
    /// W round A per block to Q8_0 and multiply in integers, and one with a BF16 W round A to bfloat16, as llama.cpp does.
    /// </summary>
    public void GemmQuantized(Transpose opW, int m, float alpha, Tensor a, long offsetA, int lda, QuantizedMatrix w, float beta,
        Tensor c, long offsetC, int ldc, ActivationPrecision activations = ActivationPrecision.Float32)
    {
        if (activations is not (ActivationPrecision.Float32 or ActivationPrecision.Q8_0 or ActivationPrecision.BFloat16))
            throw new ArgumentOutOfRangeException(nameof(activations), activations, "expected Float32, Q8_0 or BFloat16");
        CheckQuantized(w, nameof(w));
        Check.NonNegative(m, nameof(m));
        Check.Finite(alpha, nameof(alpha));
        Check.Finite(beta, nameof(beta));
        int k = opW == Transpose.Yes ? w.Columns : w.Rows, n = opW == Transpose.Yes ? w.Rows : w.Columns;
        var (a0, aBytes) = QuantizedOperand(a, nameof(a), offsetA, lda, m, k, w, opW, "reads");
        var (c0, cBytes) = QuantizedOperand(c, nameof(c), offsetC, ldc, m, n, w, opW, "writes");
        if (Check.Overlaps(c0, cBytes, a0, aBytes))
            throw new ArgumentException($"c: C [{m}×{n}] must not share memory with a ({a.Shape})", nameof(c));
        if (m == 0) return;
        GemmQuantizedCore(opW, m, alpha, a, offsetA, lda, w, beta, c, offsetC, ldc, activations);
    }

    /// <summary>
    /// Whole tensors: <paramref name="c"/> [M, N] = <paramref name="a"/>·op(<paramref name="w"/>) + β·c, a tensor of
    /// rank above 2 read as (product of leading dimensions) × (last dimension), as in <see cref="MatMul"/>.
    /// </summary>
    public void MatMulQuantized(Tensor c, Tensor a, QuantizedMatrix w, Transpose opW = Transpose.Yes, float beta = 0f)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(c);
        CheckQuantized(w, nameof(w));
        int k = opW == Transpose.Yes ? w.Columns : w.Rows, n = opW == Transpose.Yes ? w.Rows : w.Columns;
        if (a.Shape.Rank == 0 || a.Shape.Last != k)
            throw new ArgumentException($"a: expected rows of {k} (the {(opW == Transpose.Yes ? "columns" : "rows")} of {w}); got a {a.Shape}", nameof(a));
        if (c.Shape.Rank == 0 || c.Shape.Last != n || c.Shape.Rows != a.Shape.Rows)
            throw new ArgumentException($"c: expected {a.Shape.Rows} rows of {n} for a {a.Shape} times op({w}) (op {opW}); got c {c.Shape}", nameof(c));
        GemmQuantized(opW, checked((int)a.Shape.Rows), 1f, a, 0, k, w, beta, c, 0, n);
    }

    /// <summary>output[n] = table[ids[n]], decoded to float32: <see cref="EmbeddingForward(Tensor, Tensor, Tensor)"/> over a stored table.</summary>
    public void EmbeddingForward(Tensor output, Tensor ids, QuantizedMatrix table)
    {
        Check.Tensor(this, output, DType.F32, nameof(output));
        Check.Tensor(this, ids, DType.I32, nameof(ids));
        CheckQuantized(table, nameof(table));
        if (output.Shape.Rank == 0 || output.Shape.Last != table.Columns || output.Shape.Rows != ids.Length)
            throw new ArgumentException(
                $"output: expected {ids.Length} rows (one per id of ids {ids.Shape}) of {table.Columns} columns (the C of {table}); got output {output.Shape}", nameof(output));
        Check.NoOverlap(output, nameof(output), ids, nameof(ids));
        if (ids.Length == 0) return;
        long position = FindIdOutsideCore(ids, 0, table.Rows - 1, out int id);
        if (position >= 0)
            throw new ArgumentException($"ids: position {position} (of ids {ids.Shape}) has id {id}, expected 0 ≤ id < {table.Rows} (the rows of {table})", nameof(ids));
        EmbeddingForwardCore(output, ids, table);
    }

    /// <summary>
    /// Validated <see cref="Dequantize"/>. The default decodes on the host (the bytes down, the floats up): a backend
    /// with a decode kernel overrides it.
    /// </summary>
    protected virtual void DequantizeCore(Tensor destination, QuantizedMatrix source, int firstRow, int rows)
    {
        var encoded = new byte[rows * source.RowBytes];
        using (var view = source.Storage.View(firstRow * source.RowBytes, new Shape(encoded.Length))) DownloadCore(view, encoded);
        var values = new float[(long)rows * source.Columns];
        WeightRows.Decode(source.Format, encoded, values);
        UploadCore(destination, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
    }

    /// <summary>
    /// Validated <see cref="GemmQuantized"/> (m ≥ 1). The default decodes W into a pooled float32 [N′, K′] and runs the
    /// float32 GEMM with A as given (whatever <paramref name="activations"/> allows): correct on every backend, but it
    /// holds W in float32 for the call; the CPU fuses the conversion and multiplies Q8_0 activations in integers.
    /// </summary>
    protected virtual void GemmQuantizedCore(Transpose opW, int m, float alpha, Tensor a, long offsetA, int lda, QuantizedMatrix w,
        float beta, Tensor c, long offsetC, int ldc, ActivationPrecision activations)
    {
        using var dense = Allocate(DType.F32, new Shape(w.Rows, w.Columns));
        DequantizeCore(dense, w, 0, w.Rows);
        int k = opW == Transpose.Yes ? w.Columns : w.Rows, n = opW == Transpose.Yes ? w.Rows : w.Columns;
        GemmCore(new GemmProblem
        {
            TransA = Transpose.No, TransB = opW, M = m, N = n, K = k, Alpha = alpha, Beta = beta,
            A = a, OffsetA = offsetA, Lda = lda, B = dense, OffsetB = 0, Ldb = w.Columns, C = c, OffsetC = offsetC, Ldc = ldc,
        });
    }

    /// <summary>Validated <see cref="EmbeddingForward(Tensor, Tensor, QuantizedMatrix)"/>. The default decodes each id's row.</summary>
    protected virtual void EmbeddingForwardCore(Tensor output, Tensor ids, QuantizedMatrix table)
    {
        var host = new int[ids.Length];
        DownloadCore(ids, System.Runtime.InteropServices.MemoryMarshal.AsBytes(host.AsSpan()));
        for (int i = 0; i < host.Length; i++)
        {
            using var row = output.View((long)i * table.Columns, new Shape(table.Columns));
            DequantizeCore(row, table, host[i], 1);
        }
    }

    private void CheckQuantized(QuantizedMatrix? matrix, string name)
    {
        if (matrix is null) throw new ArgumentNullException(name);
        if (matrix.IsDisposed) throw new ObjectDisposedException(name, $"{name}: {matrix} was disposed");
        if (!ReferenceEquals(matrix.Backend, this))
            throw new ArgumentException($"{name}: {matrix} lives on backend '{matrix.Backend.Name}', not this '{Name}' backend", name);
    }

    /// <summary>Checks a whole-row range of a quantized matrix; returns the rows.</summary>
    private int RowRange(QuantizedMatrix? matrix, string name, int firstRow, long length, long perRow, string lengthName, string unit)
    {
        CheckQuantized(matrix, name);
        var m = matrix!;
        if (length % perRow != 0)
            throw new ArgumentException($"{lengthName}: expected whole rows of {perRow} {unit} for {matrix}; got {length}", lengthName);
        long rows = length / perRow;
        if (firstRow < 0 || firstRow + rows > m.Rows)
            throw new ArgumentOutOfRangeException(nameof(firstRow), firstRow,
                $"firstRow: rows {firstRow}..{firstRow + rows} ({rows} rows of {lengthName}) do not lie within the {m.Rows} rows of {m}");
        return (int)rows;
    }

    /// <summary>Checks a float32 operand of m rows of <paramref name="cols"/> at a stride; returns its byte extent.</summary>
    private (nint Start, long Bytes) QuantizedOperand(Tensor t, string name, long offset, int ld, int rows, int cols, QuantizedMatrix w,
        Transpose opW, string verb)
    {
        string What() => $"A·op(W) with W {w} (op {opW}) {verb} {cols} columns"; // built only for a message
        Check.Tensor(this, t, DType.F32, name);
        if (ld < Math.Max(1, cols))
            throw new ArgumentException($"ld{name}: leading dimension must be ≥ {Math.Max(1, cols)} ({What()}); got {ld}", name);
        if (offset < 0) throw new ArgumentOutOfRangeException(name, offset, $"offset{name.ToUpperInvariant()}: must be ≥ 0");
        if (rows == 0) return (0, 0);
        long end = offset + (long)(rows - 1) * ld + cols;
        if (end > t.Length)
            throw new ArgumentException($"{name}: {rows} rows of {cols} at ld={ld} from offset {offset} need {end} elements ({What()}); {name} {t.Shape} has {t.Length}", name);
        return (t.Pointer + (nint)(offset * 4), (end - offset) * 4);
    }
}

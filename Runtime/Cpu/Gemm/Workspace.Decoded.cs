namespace LoraRuntime.Cpu.Gemm;

// The products with a stored weight's panels decoded by the tasks that use them (SgemmDriver.RunDecoded).
internal sealed unsafe partial class Workspace
{
    /// <summary>
    /// C = α·A·Wᵀ + β·C for a stored weight W [N, K] (<see cref="SgemmDriver.SupportsDecoding"/>): the product of a packed job whose
    /// B panels each task decodes from W's rows, a depth block at a time, straight into its own panel buffer, where
    /// it is used at once. One parallel pass: no decoded copy of W, no chunks, no separate decoding phase. p.B is unused.
    /// </summary>
    public void ExecuteDecoded(in GemmProblem p, QuantizedMatrix w)
    {
        _jobCount = 0;
        _packedUse = 0;
        float* a = (float*)p.A.Pointer + p.OffsetA, c = (float*)p.C.Pointer + p.OffsetC;
        if (p.M == 0 || p.N == 0) return;
        if (p.K == 0 || p.Alpha == 0f)
        {
            ScaleC(c, p.M, p.N, p.Ldc, p.Beta);
            return;
        }
        var job = new GemmJob
        {
            Kind = GemmJobKind.Packed, TransA = p.TransA == Transpose.Yes, TransB = true,
            M = p.M, N = p.N, K = p.K, Alpha = p.Alpha, Beta = p.Beta, A = a, C = c, Lda = p.Lda, Ldc = p.Ldc,
            DecodeB = (byte*)w.Storage.Pointer, DecodeRowBytes = w.RowBytes, DecodeFormat = w.Format,
        };
        int mr = _k.Mr;
        bool directA = (long)job.M * job.N * job.K <= DirectMaxMacs && job.Lda < DirectMaxStride;
        int chunkRows = directA ? job.M : (int)Math.Max(mr, Math.Min(job.M, PackedACapFloats / job.K) / mr * mr);
        for (int m0 = 0; m0 < job.M; m0 += chunkRows)
        {
            int rows = Math.Min(chunkRows, job.M - m0), panels = (rows + mr - 1) / mr;
            long need = directA ? (rows % mr != 0 ? (long)mr * job.K : 0) : (long)panels * mr * job.K;
            if (_packedUse + need > PackedACapFloats && _jobCount > 0) Flush();
            var part = job;
            part.M = rows;
            part.A = job.TransA ? a + m0 : a + m0 * job.Lda;
            part.C = c + m0 * job.Ldc;
            part.MPanels = panels;
            part.DirectA = directA;
            part.PackedA = _packedUse;
            part.PackedB = -1;
            _packedUse += need;
            Push(part);
        }
        Flush();
    }

    /// <summary>
    /// Columns [n0, n0 + cols) of op(B) = Wᵀ at depth [pc, pc + kc) into kc×NR panels at <paramref name="dst"/>: NR rows of W
    /// decoded into the worker's row buffer (a depth block of each, whole quantization blocks), then transposed into the
    /// panel in registers.
    /// </summary>
    private void DecodePanels(ref GemmJob j, int n0, int cols, int pc, int kc, float* dst, int worker)
    {
        int nr = _k.Nr, blockValues = j.DecodeFormat.BlockValues();
        long blockBytes = j.DecodeFormat.BlockBytes();
        float* rows = _decodeRows[worker] != null ? _decodeRows[worker] : (_decodeRows[worker] = SgemmDriver.Alloc((long)nr * _k.Kc));
        for (int q0 = 0; q0 < cols; q0 += nr, dst += (long)nr * kc)
        {
            int count = Math.Min(nr, cols - q0);
            // A whole panel goes from the rows' blocks to the panel in registers where the format has such a path.
            if (count == nr && Quantized.PanelDecode.TryDecode(j.DecodeFormat, j.DecodeB + (long)(n0 + q0) * j.DecodeRowBytes, j.DecodeRowBytes, pc, kc, nr, dst))
                continue;
            byte* src = j.DecodeB + (long)(n0 + q0) * j.DecodeRowBytes + pc / blockValues * blockBytes;
            for (int r = 0; r < count; r++, src += j.DecodeRowBytes)
                Quantization.WeightRows.Decode(j.DecodeFormat, src, rows + (long)r * kc, kc);
            Packing.PackB(rows, kc, trans: true, count, kc, nr, dst);
        }
    }
}

namespace LoraRuntime.Cpu.Gemm;

/// <summary>How a job is computed.</summary>
internal enum GemmJobKind : byte
{
    /// <summary>Packed panels and the micro-kernel.</summary>
    Packed,
    /// <summary>y[j] = Σ_k x[k]·Mat[k, j]: matrix rows streamed, outputs along a row (M = 1, op(B) = B).</summary>
    GemvColumns,
    /// <summary>y[r] = Σ_k Mat[r, k]·x[k]: one dot product per output (M = 1 with op(B) = Bᵀ, or N = 1).</summary>
    GemvRows,
    /// <summary>y[j] = Σ_k x[k]·B[k, j] for M = 1 against a B of packed panels: <see cref="GemmJob.Chunk"/> panels per task.</summary>
    GemvPanels,
    /// <summary>Narrow N, A as stored: C[i, j] = A[i, :]·Bᵀ[j, :] with Bᵀ packed once (see <see cref="DotKernels"/>).</summary>
    Dot,
}

/// <summary>
/// One unit of a GEMM call after batches are expanded and tall problems split into row chunks whose packed A fits
/// the workspace. Pointers are already offset to the job's first row. Task ranges are assigned per wave.
/// </summary>
internal unsafe struct GemmJob
{
    public GemmJobKind Kind;
    public bool TransA, TransB;
    public bool TransposedC; // the job computes Cᵀ (A, B, M, N swapped) and its tiles are stored transposed into C
    public int M, N, K;
    public float Alpha, Beta;
    public float* A, B, C;
    // Added to every row of C (N floats) after the tile's last depth block, so it rounds as a separate add would; null
    // for none. Packed jobs that are not transposed only: Execute adds it after the call for the rest.
    public float* Bias;
    public nint Lda, Ldb, Ldc;

    // Packed jobs.
    public long PackedA;   // offset of this job's panels in the workspace's packed-A buffer
    public int MPanels;    // ⌈M / MR⌉
    public int ColumnBlock; // columns per compute block: NC, or fewer (a multiple of NR) when rows are too few to share out
    public int NBlocks;    // ⌈N / ColumnBlock⌉
    public int MRanges;    // row ranges per column block (parallelism when N is narrow)
    // When rows are split (MRanges > 1), every range would pack the same B blocks again: B is packed once in phase 1
    // instead, at PackedB (K × NPanelsTotal·NR floats, reserved when the job was added; SharedB says it is used).
    public long PackedB;   // −1: no room reserved
    public bool SharedB;
    // B is a PackedMatrix's panels (⌈N/NR⌉ panels of K×NR floats, the last zero-padded): never packed, read in place.
    public bool PanelB;
    public byte* DecodeB;          // op(B) = Wᵀ of a stored weight's rows: each task decodes its depth block into its panels
    public long DecodeRowBytes;
    public WeightFormat DecodeFormat;
    public bool DirectB;   // op(B) = B with few row panels, or DirectRowMajorB: the kernel reads B's full panels in place (row stride Ldb)
    // The kernel reads A's full row panels in place — a transposed A with rows 1 and depth steps Lda apart, a row-major
    // A with rows Lda and depth steps 1 apart — and only a last, partial panel is packed (its one panel at PackedA).
    // Set for products of at most Workspace.DirectMaxMacs whose A rows are closer than Workspace.DirectMaxStride.
    public bool DirectA;
    // Such a product's row-major B (rows closer than DirectMaxStride) is read in place too (DirectB), however many row
    // panels: the packing left is a transposed B's and the partial edge panels'.
    public bool DirectRowMajorB;
    public int APackTasks; // phase-1 tasks that pack A; the rest of PackTaskCount pack the shared B

    // Dot jobs keep packed Bᵀ at PackedA with row stride Ldm, and split rows into MRanges.

    // GEMV jobs: y[i·incY] for i < Outputs, over a depth of Depth; Mat has row stride Ldm; x has stride IncX.
    public float* Mat, X, Y;
    public nint Ldm, IncX, IncY;
    public int Outputs, Depth, Chunk;
    // GemvColumns: the depth is split in DepthSplits parts whose partial sums (DepthSplits × Outputs floats at
    // PackedA) the last task to finish adds up; Pending counts the tasks still running.
    public int DepthSplits, Pending;

    public int PackTaskStart, PackTaskCount;
    public int ComputeTaskStart, ComputeTaskCount;
}

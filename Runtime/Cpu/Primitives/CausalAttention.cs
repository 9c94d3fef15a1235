using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace LoraRuntime.Cpu.Primitives;

/// <summary>
/// The register-blocked pieces of fused causal attention for one (batch, head) held in L1: q, k, v [T, HS] (rows of
/// a packed qkv, any row stride) and the probabilities [T, T]. Rows go four at a time, 32 columns (two vectors, eight
/// sums) at a time and a last 16; a causal row block reads only the columns up to its last row, so half the products
/// are skipped. AVX-512 and HS a multiple of 16 only (<see cref="Supported"/>).
/// </summary>
internal static unsafe class CausalAttentionKernels
{
    public const int Rows = 4;

    public static bool Supported(int headSize) => Vector512.IsHardwareAccelerated && headSize % 16 == 0 && headSize <= 256;

    /// <summary>Floats of per-item scratch: a transposed [HS, T̄] operand and four score rows of T̄ = T rounded up to 16.</summary>
    public static long ScratchFloats(int time, int headSize) => (long)(headSize + Rows) * Padded(time);

    public static int Padded(int time) => (time + 15) / 16 * 16;

    /// <summary>dst[d·ldt + j] = src[j·lds + d] for j &lt; t, d &lt; hs; columns [t, ldt) zeroed.</summary>
    public static void Transpose(float* src, nint lds, int t, int hs, float* dst, int ldt)
    {
        for (int d = 0; d < hs; d++) new Span<float>(dst + (nint)d * ldt + t, ldt - t).Clear();
        int whole = Gemm.RegisterTranspose.IsAccelerated ? t / 8 * 8 : 0; // hs is a multiple of 16
        for (int j = 0; j < whole; j += 8)
            for (int d = 0; d < hs; d += 8)
                Gemm.RegisterTranspose.Block8x8(src + j * lds + d, lds, dst + (nint)d * ldt + j, ldt);
        for (int j = whole; j < t; j++)
        {
            float* s = src + j * lds;
            for (int d = 0; d < hs; d++) dst[(nint)d * ldt + j] = s[d];
        }
    }

    /// <summary>
    /// The softmax backward of one causal row: ds[j] = p[j]·(dp[j] − Σ p·dp) for j &lt; visible and 0 up to t, in two
    /// vector passes (the row is short: a library call per step would cost more than the arithmetic).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SoftmaxBackwardRow(float* p, float* dp, int visible, int t, float* ds)
    {
        int j = 0;
        var acc = Vector512<float>.Zero;
        for (; j + 16 <= visible; j += 16) acc = Vector512.FusedMultiplyAdd(Vector512.Load(p + j), Vector512.Load(dp + j), acc);
        float dot = Vector512.Sum(acc);
        for (; j < visible; j++) dot += p[j] * dp[j];
        var splat = Vector512.Create(dot);
        j = 0;
        for (; j + 16 <= visible; j += 16) (Vector512.Load(p + j) * (Vector512.Load(dp + j) - splat)).Store(ds + j);
        for (; j < visible; j++) ds[j] = p[j] * (dp[j] - dot);
        new Span<float>(ds + visible, t - visible).Clear();
    }

    /// <summary>
    /// out[r·ldo + j] = α·Σ_{d &lt; depth} a[r·rsa + d·csa]·m[d·ldm + j] for r &lt; rows ≤ 4 and j &lt; cols (a multiple of
    /// 16): every product of the head's passes, its A read in place by strides as the GEMM's micro-kernels read theirs —
    /// rows of q, dy or the probabilities (rsa = row stride, csa = 1), or columns of a lower-triangular probability
    /// matrix from its diagonal down (rsa = 1, csa = row stride: pᵀ·m).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Product(float* a, nint rsa, nint csa, int rows, int depth, float* m, nint ldm, int cols, float alpha, float* output, nint ldo)
    {
        // Rows past the count read row 0 again (in bounds); their sums are not stored.
        nint r1 = rows > 1 ? rsa : 0, r2 = rows > 2 ? 2 * rsa : 0, r3 = rows > 3 ? 3 * rsa : 0;
        var scale = Vector512.Create(alpha);
        int c = 0;
        // Two column vectors at a time: eight independent sums hide the multiply-add latency that four would expose.
        for (; c + 32 <= cols; c += 32)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
            float* ad = a, md = m + c;
            for (int d = 0; d < depth; d++, ad += csa, md += ldm)
            {
                var mv = Vector512.Load(md);
                var mw = Vector512.Load(md + 16);
                var s0 = Vector512.Create(ad[0]);
                a0 = Vector512.FusedMultiplyAdd(s0, mv, a0);
                b0 = Vector512.FusedMultiplyAdd(s0, mw, b0);
                var s1 = Vector512.Create(ad[r1]);
                a1 = Vector512.FusedMultiplyAdd(s1, mv, a1);
                b1 = Vector512.FusedMultiplyAdd(s1, mw, b1);
                var s2 = Vector512.Create(ad[r2]);
                a2 = Vector512.FusedMultiplyAdd(s2, mv, a2);
                b2 = Vector512.FusedMultiplyAdd(s2, mw, b2);
                var s3 = Vector512.Create(ad[r3]);
                a3 = Vector512.FusedMultiplyAdd(s3, mv, a3);
                b3 = Vector512.FusedMultiplyAdd(s3, mw, b3);
            }
            (a0 * scale).Store(output + c);
            (b0 * scale).Store(output + c + 16);
            if (rows > 1) { (a1 * scale).Store(output + ldo + c); (b1 * scale).Store(output + ldo + c + 16); }
            if (rows > 2) { (a2 * scale).Store(output + 2 * ldo + c); (b2 * scale).Store(output + 2 * ldo + c + 16); }
            if (rows > 3) { (a3 * scale).Store(output + 3 * ldo + c); (b3 * scale).Store(output + 3 * ldo + c + 16); }
        }
        for (; c < cols; c += 16)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            float* ad = a, md = m + c;
            for (int d = 0; d < depth; d++, ad += csa, md += ldm)
            {
                var mv = Vector512.Load(md);
                a0 = Vector512.FusedMultiplyAdd(Vector512.Create(ad[0]), mv, a0);
                a1 = Vector512.FusedMultiplyAdd(Vector512.Create(ad[r1]), mv, a1);
                a2 = Vector512.FusedMultiplyAdd(Vector512.Create(ad[r2]), mv, a2);
                a3 = Vector512.FusedMultiplyAdd(Vector512.Create(ad[r3]), mv, a3);
            }
            (a0 * scale).Store(output + c);
            if (rows > 1) (a1 * scale).Store(output + ldo + c);
            if (rows > 2) (a2 * scale).Store(output + 2 * ldo + c);
            if (rows > 3) (a3 * scale).Store(output + 3 * ldo + c);
        }
    }

    /// <summary>Per-item scratch up to this many floats lives on the stack; more comes from <see cref="Rent"/> (freed by <see cref="Return"/>).</summary>
    public const long StackScratchFloats = 8192;

    public static float* Rent(long floats) => (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);

    public static void Return(float* p) => NativeMemory.AlignedFree(p);
}

/// <summary>
/// Forward over items (b, h) of a packed qkv [B, T, 3C] (q, k, v each C wide, head h at h·HS): att [b, h] = causal
/// softmax(scale·q·kᵀ) with masked columns 0, and y [B, T, C] (head h at h·HS) = att·v, in one pass per head while its
/// operands are in L1: no split into heads before, no merge after.
/// </summary>
internal unsafe struct CausalAttentionForwardOp : IRangeOp
{
    public float* Y, Att, Qkv;
    public int Time, Heads, HeadSize;
    public float Scale;

    public readonly void Run(long start, long end)
    {
        int t = Time, hs = HeadSize, c = Heads * hs, ldt = CausalAttentionKernels.Padded(t);
        nint ldq = 3 * c;
        long need = CausalAttentionKernels.ScratchFloats(t, hs);
        float* heap = need > CausalAttentionKernels.StackScratchFloats ? CausalAttentionKernels.Rent(need) : null;
        float* stack = stackalloc float[heap == null ? (int)need + 16 : 0];
        float* kT = heap != null ? heap : (float*)(((nint)stack + 63) & ~(nint)63);
        float* scores = kT + (long)hs * ldt;
        try
        {
            for (long item = start; item < end; item++)
            {
                long b = item / Heads, h = item % Heads;
                float* q = Qkv + b * t * ldq + h * hs, k = q + c, v = q + 2 * c;
                float* y = Y + b * t * c + h * hs, att = Att + item * t * t;
                CausalAttentionKernels.Transpose(k, ldq, t, hs, kT, ldt);
                for (int i0 = 0; i0 < t; i0 += CausalAttentionKernels.Rows)
                {
                    int rows = Math.Min(CausalAttentionKernels.Rows, t - i0), len = i0 + rows;
                    CausalAttentionKernels.Product(q + i0 * ldq, ldq, 1, rows, hs, kT, ldt, CausalAttentionKernels.Padded(len), Scale, scores, ldt);
                    for (int r = 0; r < rows; r++)
                    {
                        float* row = att + (long)(i0 + r) * t;
                        int visible = i0 + r + 1;
                        Softmax.Row(row, scores + (long)r * ldt, visible, out _);
                        new Span<float>(row + visible, t - visible).Clear();
                    }
                    CausalAttentionKernels.Product(att + (long)i0 * t, t, 1, rows, len, v, ldq, hs, 1f, y + i0 * c, c);
                }
            }
        }
        finally
        {
            if (heap != null) CausalAttentionKernels.Return(heap);
        }
    }
}

/// <summary>
/// Backward over items (b, h) from dy [B, T, C] and the saved att: dv = attᵀ·dy, dP = dy·vᵀ (the causal part only),
/// dS = att ⊙ (dP − Σ att ⊙ dP) into dScores, dq = scale·dS·k and dk = scale·dSᵀ·q, written into dQkv [B, T, 3C] in
/// qkv's layout (every element of it: the gradients are stored, not accumulated).
/// </summary>
internal unsafe struct CausalAttentionBackwardOp : IRangeOp
{
    public float* DQkv, DScores, DY, Qkv, Att;
    public int Time, Heads, HeadSize;
    public float Scale;

    public readonly void Run(long start, long end)
    {
        int t = Time, hs = HeadSize, c = Heads * hs, ldt = CausalAttentionKernels.Padded(t);
        nint ldq = 3 * c;
        long need = CausalAttentionKernels.ScratchFloats(t, hs);
        float* heap = need > CausalAttentionKernels.StackScratchFloats ? CausalAttentionKernels.Rent(need) : null;
        float* stack = stackalloc float[heap == null ? (int)need + 16 : 0];
        float* vT = heap != null ? heap : (float*)(((nint)stack + 63) & ~(nint)63);
        float* dP = vT + (long)hs * ldt;
        try
        {
            for (long item = start; item < end; item++)
            {
                long b = item / Heads, h = item % Heads, square = item * t * t, head = b * t * ldq + h * hs;
                float* q = Qkv + head, k = q + c, v = q + 2 * c;
                float* dq = DQkv + head, dk = dq + c, dv = dq + 2 * c;
                float* dy = DY + b * t * c + h * hs, att = Att + square, dS = DScores + square;
                CausalAttentionKernels.Transpose(v, ldq, t, hs, vT, ldt);
                for (int i0 = 0; i0 < t; i0 += CausalAttentionKernels.Rows)
                {
                    int rows = Math.Min(CausalAttentionKernels.Rows, t - i0);
                    CausalAttentionKernels.Product(dy + i0 * c, c, 1, rows, hs, vT, ldt, CausalAttentionKernels.Padded(i0 + rows), 1f, dP, ldt);
                    for (int r = 0; r < rows; r++)
                    {
                        int i = i0 + r;
                        CausalAttentionKernels.SoftmaxBackwardRow(att + (long)i * t, dP + (long)r * ldt, i + 1, t, dS + (long)i * t);
                    }
                }
                for (int j0 = 0; j0 < t; j0 += CausalAttentionKernels.Rows)
                {
                    int count = Math.Min(CausalAttentionKernels.Rows, t - j0);
                    // dv = attᵀ·dy and dk = scale·dSᵀ·q over rows j0.. (the triangle below the diagonal); dq = scale·dS·k.
                    long diagonal = (long)j0 * t + j0;
                    CausalAttentionKernels.Product(att + diagonal, 1, t, count, t - j0, dy + j0 * c, c, hs, 1f, dv + j0 * ldq, ldq);
                    CausalAttentionKernels.Product(dS + (long)j0 * t, t, 1, count, j0 + count, k, ldq, hs, Scale, dq + j0 * ldq, ldq);
                    CausalAttentionKernels.Product(dS + diagonal, 1, t, count, t - j0, q + j0 * ldq, ldq, hs, Scale, dk + j0 * ldq, ldq);
                }
            }
        }
        finally
        {
            if (heap != null) CausalAttentionKernels.Return(heap);
        }
    }
}

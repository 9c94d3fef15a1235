using System.Runtime.InteropServices;

namespace LoraRuntime.Cpu.Primitives;

/// <summary>
/// <see cref="Backend.CachedAttention"/> over items (row, head): scores s_j = scale·q·k_j for the row's cached
/// positions, the softmax of <see cref="Softmax.Row"/>, and out = Σ_j p_j·v_j, all in one pass over the head's keys
/// and values while they are in cache. One item is a few microseconds of work, so a batch's rows and heads share out
/// over the workers in one hand-off instead of a GEMM call per row and stage.
/// </summary>
internal unsafe struct DecodeAttentionOp : IRangeOp
{
    /// <summary>Scores up to this length live on the stack; longer rows take native memory for the call.</summary>
    private const int StackScores = 4096;

    public float* Output, Queries, Cache;
    public DecodeAttentionRow* Rows;
    public nint Stride;
    public int Heads, Group, HeadSize, MaxLength; // Group: query heads per key/value head
    public float Scale;

    public readonly void Run(long start, long end)
    {
        float* heap = null;
        float* scores;
        if (MaxLength <= StackScores)
        {
            float* stack = stackalloc float[MaxLength];
            scores = stack;
        }
        else
        {
            heap = (float*)NativeMemory.Alloc((nuint)MaxLength, sizeof(float));
            scores = heap;
        }
        try
        {
            for (long item = start; item < end; item++)
            {
                ref readonly var row = ref Rows[item / Heads];
                int head = (int)(item % Heads);
                long at = (long)head * HeadSize, kv = (long)(head / Group) * HeadSize;
                float* output = Output + row.Output + at, q = Queries + row.Query + at, keys = Cache + row.Keys + kv, values = Cache + row.Values + kv;
                // The widest vector that divides HS (the scalar width always does).
                if (Simd512.IsAccelerated && HeadSize % Simd512.Count == 0) Head<Simd512>(output, q, keys, values, row.Length, scores);
                else if (Simd256.IsAccelerated && HeadSize % Simd256.Count == 0) Head<Simd256>(output, q, keys, values, row.Length, scores);
                else if (Simd128.IsAccelerated && HeadSize % Simd128.Count == 0) Head<Simd128>(output, q, keys, values, row.Length, scores);
                else Head<Simd1>(output, q, keys, values, row.Length, scores);
            }
        }
        finally
        {
            if (heap != null) NativeMemory.Free(heap);
        }
    }

    /// <summary>One (row, head): HS is a multiple of TV's width, so no tails.</summary>
    private readonly void Head<TV>(float* output, float* q, float* keys, float* values, int length, float* scores) where TV : struct, ISimd<TV>
    {
        int hs = HeadSize, width = TV.Count;
        nint stride = Stride;
        for (int j = 0; j < length; j++)
        {
            float* k = keys + j * stride;
            var acc = TV.Load(q) * TV.Load(k);
            for (int d = width; d < hs; d += width) acc = TV.MultiplyAdd(TV.Load(q + d), TV.Load(k + d), acc);
            scores[j] = Scale * acc.Sum();
        }
        Softmax.Row(scores, scores, length, out _);
        // Each vector-wide slice of the output sums in a register over every position.
        for (int c = 0; c < hs; c += width)
        {
            var acc = TV.Load(values + c) * TV.Splat(scores[0]);
            for (int j = 1; j < length; j++) acc = TV.MultiplyAdd(TV.Splat(scores[j]), TV.Load(values + j * stride + c), acc);
            acc.Store(output + c);
        }
    }
}

using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace LoraRuntime.Cpu.Primitives;

/// <summary>
/// <see cref="Backend.TryDecodeAttention"/> over items (row, head): scores s_j = scale·q·k_j for the row's cached
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
    public int Heads, HeadSize, MaxLength;
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
                long at = item % Heads * HeadSize;
                Head(Output + row.Output + at, Queries + row.Query + at, Cache + row.Keys + at, Cache + row.Values + at, row.Length, scores);
            }
        }
        finally
        {
            if (heap != null) NativeMemory.Free(heap);
        }
    }

    private readonly void Head(float* output, float* q, float* keys, float* values, int length, float* scores)
    {
        int hs = HeadSize;
        nint stride = Stride;
        if (Vector512.IsHardwareAccelerated && hs % 16 == 0)
        {
            for (int j = 0; j < length; j++) scores[j] = Scale * Dot512(q, keys + j * stride, hs);
        }
        else if (Vector256.IsHardwareAccelerated && hs % 8 == 0)
        {
            for (int j = 0; j < length; j++) scores[j] = Scale * Dot256(q, keys + j * stride, hs);
        }
        else
        {
            var query = new ReadOnlySpan<float>(q, hs);
            for (int j = 0; j < length; j++) scores[j] = Scale * TensorPrimitives.Dot(query, new ReadOnlySpan<float>(keys + j * stride, hs));
        }
        Softmax.Row(scores, scores, length, out _);
        if (Vector512.IsHardwareAccelerated && hs % 16 == 0)
        {
            // Each 16-wide slice of the output sums in a register over every position.
            for (int c = 0; c < hs; c += 16)
            {
                var acc = Vector512<float>.Zero;
                float* v = values + c;
                for (int j = 0; j < length; j++) acc = Vector512.FusedMultiplyAdd(Vector512.Create(scores[j]), Vector512.Load(v + j * stride), acc);
                acc.Store(output + c);
            }
            return;
        }
        if (Vector256.IsHardwareAccelerated && hs % 8 == 0)
        {
            for (int c = 0; c < hs; c += 8)
            {
                var acc = Vector256<float>.Zero;
                float* v = values + c;
                for (int j = 0; j < length; j++) acc = Vector256.FusedMultiplyAdd(Vector256.Create(scores[j]), Vector256.Load(v + j * stride), acc);
                acc.Store(output + c);
            }
            return;
        }
        var sum = new Span<float>(output, hs);
        sum.Clear();
        for (int j = 0; j < length; j++)
            TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(values + j * stride, hs), scores[j], sum, sum);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot256(float* a, float* b, int n)
    {
        var acc = Vector256.Multiply(Vector256.Load(a), Vector256.Load(b));
        for (int i = 8; i < n; i += 8) acc = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), acc);
        return Vector256.Sum(acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot512(float* a, float* b, int n)
    {
        var acc = Vector512.Multiply(Vector512.Load(a), Vector512.Load(b));
        for (int i = 16; i < n; i += 16) acc = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(b + i), acc);
        return Vector512.Sum(acc);
    }
}

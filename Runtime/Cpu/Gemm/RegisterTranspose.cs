using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace LoraRuntime.Cpu.Gemm;

/// <summary>
/// Register transposes of small float blocks for the packing routines: dst[c·ldd + r] = src[r·lds + c]. A transposing
/// pack that moves one float at a time with a strided store costs about as much as a K = 128 product itself; eight
/// loads, 24 shuffles and eight stores move 64 floats.
/// </summary>
internal static unsafe class RegisterTranspose
{
    /// <summary>True where the 8×8 and 4×4 blocks run in registers (x86 with AVX); elsewhere callers go scalar.</summary>
    public static bool IsAccelerated => Avx.IsSupported;

    /// <summary>Transposes the 8×8 block at <paramref name="src"/> (row stride lds) into <paramref name="dst"/> (row stride ldd).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Block8x8(float* src, nint lds, float* dst, nint ldd)
    {
        var r0 = Avx.LoadVector256(src);
        var r1 = Avx.LoadVector256(src + lds);
        var r2 = Avx.LoadVector256(src + 2 * lds);
        var r3 = Avx.LoadVector256(src + 3 * lds);
        var r4 = Avx.LoadVector256(src + 4 * lds);
        var r5 = Avx.LoadVector256(src + 5 * lds);
        var r6 = Avx.LoadVector256(src + 6 * lds);
        var r7 = Avx.LoadVector256(src + 7 * lds);
        Store8x8(r0, r1, r2, r3, r4, r5, r6, r7, dst, ldd);
    }

    /// <summary>
    /// The 8×8 block of BF16 values at <paramref name="src"/> (rows <paramref name="rowBytes"/> apart), widened to float32
    /// (exact: a BF16 is a float32's upper half) and transposed into <paramref name="dst"/> (row stride ldd): a stored
    /// weight's rows decoded straight into a GEMM panel, with no row buffer between. Needs AVX2.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void BFloat16Block8x8(byte* src, nint rowBytes, float* dst, nint ldd)
    {
        static Vector256<float> Widen(byte* p) => Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(Sse2.LoadVector128((ushort*)p)), 16).AsSingle();
        Store8x8(Widen(src), Widen(src + rowBytes), Widen(src + 2 * rowBytes), Widen(src + 3 * rowBytes), Widen(src + 4 * rowBytes),
            Widen(src + 5 * rowBytes), Widen(src + 6 * rowBytes), Widen(src + 7 * rowBytes), dst, ldd);
    }

    /// <summary>Stores the transpose of the eight rows r0…r7 into <paramref name="dst"/> (row stride ldd).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store8x8(Vector256<float> r0, Vector256<float> r1, Vector256<float> r2, Vector256<float> r3, Vector256<float> r4,
        Vector256<float> r5, Vector256<float> r6, Vector256<float> r7, float* dst, nint ldd)
    {
        // Pairs of rows interleaved, then pairs of pairs, then the 128-bit halves exchanged.
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44); var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44); var u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(dst, Avx.Permute2x128(u0, u4, 0x20));
        Avx.Store(dst + ldd, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(dst + 2 * ldd, Avx.Permute2x128(u2, u6, 0x20));
        Avx.Store(dst + 3 * ldd, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(dst + 4 * ldd, Avx.Permute2x128(u0, u4, 0x31));
        Avx.Store(dst + 5 * ldd, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(dst + 6 * ldd, Avx.Permute2x128(u2, u6, 0x31));
        Avx.Store(dst + 7 * ldd, Avx.Permute2x128(u3, u7, 0x31));
    }

    /// <summary>Transposes the 4×4 block at <paramref name="src"/> (row stride lds) into <paramref name="dst"/> (row stride ldd).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Block4x4(float* src, nint lds, float* dst, nint ldd)
    {
        var r0 = Sse.LoadVector128(src);
        var r1 = Sse.LoadVector128(src + lds);
        var r2 = Sse.LoadVector128(src + 2 * lds);
        var r3 = Sse.LoadVector128(src + 3 * lds);
        var t0 = Sse.UnpackLow(r0, r1); var t1 = Sse.UnpackLow(r2, r3);
        var t2 = Sse.UnpackHigh(r0, r1); var t3 = Sse.UnpackHigh(r2, r3);
        Sse.Store(dst, Sse.MoveLowToHigh(t0, t1));
        Sse.Store(dst + ldd, Sse.MoveHighToLow(t1, t0));
        Sse.Store(dst + 2 * ldd, Sse.MoveLowToHigh(t2, t3));
        Sse.Store(dst + 3 * ldd, Sse.MoveHighToLow(t3, t2));
    }
}

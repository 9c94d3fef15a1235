using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using LoraRuntime.Quantization;

namespace LoraRuntime.Cpu.Quantized;

/// <summary>
/// Lays out 32 rows of a Q8_0 or Q4_0 weight as the panel <see cref="Int8Kernels"/> multiply, block by block of 32
/// depths: two groups of 16 rows, each eight 64-byte vectors whose lane c holds four consecutive depths of the group's
/// row c as unsigned bytes (Q8_0: w + 128; Q4_0: its 4-bit code, w + 8), then the 32 rows' scales as float32. The
/// rows' blocks are read in their stored form and transposed in registers; rows past the matrix repeat its last row.
/// </summary>
internal static unsafe class Int8Panel
{
    /// <summary>What the kernels' compensation multiplies Σq by: the weights' offset as stored in the panel.</summary>
    public static int Offset(WeightFormat format) => format == WeightFormat.Q8_0 ? 128 : 8;

    /// <summary>True where <see cref="Pack"/> runs in registers (AVX-512F and BW, which the kernels need anyway).</summary>
    public static bool IsSupported => Avx512F.IsSupported && Avx512BW.IsSupported;

    /// <summary>
    /// Packs rows <paramref name="firstRow"/>… (32, clamped to <paramref name="rows"/>) of the matrix at
    /// <paramref name="w"/> into <paramref name="panel"/> (<paramref name="blocks"/> × <see cref="Int8Kernels.PanelBlockBytes"/>).
    /// </summary>
    [SkipLocalsInit]
    public static void Pack(WeightFormat format, byte* w, long rowBytes, int rows, int firstRow, int blocks, byte* panel)
    {
        byte** row = stackalloc byte*[Int8Kernels.TileColumns];
        for (int i = 0; i < Int8Kernels.TileColumns; i++) row[i] = w + Math.Min(firstRow + i, rows - 1) * rowBytes;
        ushort* halves = stackalloc ushort[Int8Kernels.TileColumns];
        bool q8 = format == WeightFormat.Q8_0;
        int size = q8 ? 2 + QuantBlocks.BlockSize : 2 + QuantBlocks.BlockSize / 2;
        var magnitude = Vector512.Create(0x7FFFu);
        var sign = Vector512.Create(0x8000u);
        var scale = Vector512.Create(5.192296858534828e33f);
        for (int b = 0; b < blocks; b++)
        {
            byte* dst = panel + (long)b * Int8Kernels.PanelBlockBytes;
            long at = (long)b * size;
            for (int g = 0; g < 2; g++)
            {
                byte** r = row + 16 * g;
                Transpose(
                    Pair(r[0] + at, r[8] + at, q8), Pair(r[1] + at, r[9] + at, q8), Pair(r[2] + at, r[10] + at, q8), Pair(r[3] + at, r[11] + at, q8),
                    Pair(r[4] + at, r[12] + at, q8), Pair(r[5] + at, r[13] + at, q8), Pair(r[6] + at, r[14] + at, q8), Pair(r[7] + at, r[15] + at, q8),
                    dst + 512 * g);
            }
            for (int i = 0; i < Int8Kernels.TileColumns; i++) halves[i] = Unsafe.ReadUnaligned<ushort>(row[i] + at);
            for (int g = 0; g < 2; g++)
            {
                var bits = Avx512F.ConvertToVector512UInt32(Vector256.Load(halves + 16 * g));
                WeightRows.HalfToSingle(bits, magnitude, sign, scale).Store((float*)(dst + 1024 + 64 * g));
            }
        }
    }

    /// <summary>The 32 unsigned quants of one block of row i (low half) and of row i + 8 (high half).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Pair(byte* low, byte* high, bool q8) => Vector512.Create(Quants(low, q8), Quants(high, q8)).AsInt32();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Quants(byte* block, bool q8)
    {
        if (q8) return Vector256.Load(block + 2) ^ Vector256.Create((byte)0x80);
        var packed = Vector128.Load(block + 2);
        var nibble = Vector128.Create((byte)0x0F);
        // Depths 0–15 are the low nibbles, 16–31 the high ones.
        return Vector256.Create(packed & nibble, Vector128.ShiftRightLogical(packed, 4) & nibble);
    }

    /// <summary>
    /// z_i holds rows i and i + 8 (eight dwords of four depths each); stores the eight vectors of one depth quad across
    /// the 16 rows, quad q at <paramref name="dst"/> + 64q: a dword transpose within each 128-bit lane, then the lanes
    /// of rows 0–7 and 8–15 brought together.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Transpose(Vector512<int> z0, Vector512<int> z1, Vector512<int> z2, Vector512<int> z3,
        Vector512<int> z4, Vector512<int> z5, Vector512<int> z6, Vector512<int> z7, byte* dst)
    {
        var t0 = Avx512F.UnpackLow(z0, z1).AsInt64(); var t1 = Avx512F.UnpackHigh(z0, z1).AsInt64();
        var t2 = Avx512F.UnpackLow(z2, z3).AsInt64(); var t3 = Avx512F.UnpackHigh(z2, z3).AsInt64();
        var t4 = Avx512F.UnpackLow(z4, z5).AsInt64(); var t5 = Avx512F.UnpackHigh(z4, z5).AsInt64();
        var t6 = Avx512F.UnpackLow(z6, z7).AsInt64(); var t7 = Avx512F.UnpackHigh(z6, z7).AsInt64();
        // u_e (rows 0–3) and v_e (rows 4–7): per lane, element e of four rows; lanes: quads e, 4 + e of rows i, then of i + 8.
        var u0 = Avx512F.UnpackLow(t0, t2); var u1 = Avx512F.UnpackHigh(t0, t2);
        var u2 = Avx512F.UnpackLow(t1, t3); var u3 = Avx512F.UnpackHigh(t1, t3);
        var v0 = Avx512F.UnpackLow(t4, t6); var v1 = Avx512F.UnpackHigh(t4, t6);
        var v2 = Avx512F.UnpackLow(t5, t7); var v3 = Avx512F.UnpackHigh(t5, t7);
        var low = Vector512.Create(0L, 1, 8, 9, 4, 5, 12, 13);
        var high = Vector512.Create(2L, 3, 10, 11, 6, 7, 14, 15);
        Avx512F.PermuteVar8x64x2(u0, low, v0).Store((long*)dst);
        Avx512F.PermuteVar8x64x2(u1, low, v1).Store((long*)(dst + 64));
        Avx512F.PermuteVar8x64x2(u2, low, v2).Store((long*)(dst + 128));
        Avx512F.PermuteVar8x64x2(u3, low, v3).Store((long*)(dst + 192));
        Avx512F.PermuteVar8x64x2(u0, high, v0).Store((long*)(dst + 256));
        Avx512F.PermuteVar8x64x2(u1, high, v1).Store((long*)(dst + 320));
        Avx512F.PermuteVar8x64x2(u2, high, v2).Store((long*)(dst + 384));
        Avx512F.PermuteVar8x64x2(u3, high, v3).Store((long*)(dst + 448));
    }
}

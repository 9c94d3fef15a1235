using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace LoraRuntime.Cpu.Quantized;

/// <summary>
/// Lays out 32 rows of a BF16 weight as the panel <see cref="Bf16Kernels"/> multiply, block by block of 16 depths: two
/// groups of 16 rows, each eight 64-byte vectors whose lane c holds a depth pair of the group's row c (two bfloat16,
/// the first depth low). The rows are read as stored and transposed in registers as <see cref="Int8Panel"/>'s blocks
/// are (a pair is a dword as a depth quad is there); a last block past the depth is zero-padded, and rows past the
/// matrix repeat its last row.
/// </summary>
internal static unsafe class Bf16Panel
{
    /// <summary>Blocks of 16 depths a row of <paramref name="k"/> values takes (the last zero-padded).</summary>
    public static int Blocks(int k) => (k + Bf16Kernels.BlockDepths - 1) / Bf16Kernels.BlockDepths;

    /// <summary>
    /// Packs rows <paramref name="firstRow"/>… (32, clamped to <paramref name="rows"/>) of the BF16 matrix at
    /// <paramref name="w"/> (<paramref name="k"/> values a row) into <paramref name="panel"/> (<see cref="Blocks"/>(k) ×
    /// <see cref="Bf16Kernels.PanelBlockBytes"/>).
    /// </summary>
    [SkipLocalsInit]
    public static void Pack(ushort* w, int k, int rows, int firstRow, byte* panel)
    {
        const int columns = Bf16Kernels.TileColumns, depths = Bf16Kernels.BlockDepths;
        ushort** row = stackalloc ushort*[columns];
        for (int i = 0; i < columns; i++) row[i] = w + (long)Math.Min(firstRow + i, rows - 1) * k;
        int whole = k / depths, blocks = Blocks(k);
        for (int b = 0; b < whole; b++) PackBlock(row, (long)b * depths, panel + (long)b * Bf16Kernels.PanelBlockBytes);
        if (whole == blocks) return;
        // The last, partial block: each row's tail copied into zero-padded rows of its own.
        ushort* tail = stackalloc ushort[columns * depths];
        ushort** tailRow = stackalloc ushort*[columns];
        int left = k - whole * depths;
        for (int i = 0; i < columns; i++)
        {
            tailRow[i] = tail + i * depths;
            for (int d = 0; d < depths; d++) tailRow[i][d] = d < left ? row[i][whole * depths + d] : (ushort)0;
        }
        PackBlock(tailRow, 0, panel + (long)whole * Bf16Kernels.PanelBlockBytes);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PackBlock(ushort** row, long at, byte* dst)
    {
        for (int g = 0; g < 2; g++)
        {
            ushort** r = row + 16 * g;
            Int8Panel.Transpose(
                Pair(r[0] + at, r[8] + at), Pair(r[1] + at, r[9] + at), Pair(r[2] + at, r[10] + at), Pair(r[3] + at, r[11] + at),
                Pair(r[4] + at, r[12] + at), Pair(r[5] + at, r[13] + at), Pair(r[6] + at, r[14] + at), Pair(r[7] + at, r[15] + at),
                dst + 512 * g);
        }
    }

    /// <summary>16 depths of row i (low half) and of row i + 8 (high half).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Pair(ushort* low, ushort* high) => Vector512.Create(Vector256.Load(low), Vector256.Load(high)).AsInt32();
}

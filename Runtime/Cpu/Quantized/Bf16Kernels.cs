using System.Runtime.InteropServices;
using LoraRuntime.Cpu.Jit;
using X86 = System.Runtime.Intrinsics.X86;

namespace LoraRuntime.Cpu.Quantized;

/// <summary>The arguments of one generated bfloat16 micro-kernel call (the offsets are the generated code's).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct Bf16KernelArgs
{
    public ushort* A;       //  0: row 0's bfloat16 activations at the first depth
    public ushort* A3;      //  8: row 3's
    public long Lda;        // 16: bytes between activation rows
    public byte* Panel;     // 24: the weight tile's first block
    public long Blocks;     // 32: blocks of 16 depths (≥ 1)
    public float* Output;   // 40: [rows, 32] float32, written
}

/// <summary>
/// Micro-kernels for BF16 × BF16 products with AVX-512 BF16 (<c>vdpbf16ps</c>: per float32 lane, the two products of a
/// pair of bfloat16, 32 multiply-adds an instruction, twice a float32 FMA's), generated at run time as
/// <see cref="Int8Kernels"/> are: .NET 10 does not expose the instruction. A kernel computes a tile of up to
/// <see cref="MaxRows"/> activation rows × <see cref="TileColumns"/> weight rows over the whole depth, a block of 16
/// depths at a time: eight depth pairs, each a broadcast of the row's pair against the two 16-column groups of the
/// panel <see cref="Bf16Panel"/> lays out. This is llama.cpp's arithmetic for a BF16 weight: activations rounded to
/// bfloat16, products and sums in float32.
/// </summary>
internal static unsafe class Bf16Kernels
{
    /// <summary>Activation rows of one call, at most.</summary>
    public const int MaxRows = 6;

    /// <summary>Weight rows (output columns) of one tile.</summary>
    public const int TileColumns = 32;

    /// <summary>Depths of one block.</summary>
    public const int BlockDepths = 16;

    /// <summary>Bytes of one block of a tile's panel: two groups of 16 columns × 16 depths.</summary>
    public const int PanelBlockBytes = 2 * 512;

    private static readonly nint[]? s_kernels = GeneratedKernels.Generate(MaxRows, Emit,
        CpuHasAvx512Bf16 ? null : "the CPU has no AVX-512 BF16", out s_unavailable);
    private static readonly string? s_unavailable;

    /// <summary>True where the kernels run here: AVX-512 BF16, and generated code allowed.</summary>
    public static bool IsSupported => s_kernels is not null;

    /// <summary>Why the kernels do not run here (null where they do).</summary>
    public static string? Unavailable => s_unavailable;

    /// <summary>AVX-512 BF16 (CPUID leaf 7 sub-leaf 1, EAX bit 5) with AVX-512F and BW.</summary>
    public static bool CpuHasAvx512Bf16 =>
        X86.Avx512F.IsSupported && X86.Avx512BW.IsSupported && X86.X86Base.CpuId(7, 0).Eax >= 1 && (X86.X86Base.CpuId(7, 1).Eax & (1 << 5)) != 0;

    /// <summary>Runs the kernel for <paramref name="rows"/> (1…<see cref="MaxRows"/>) activation rows.</summary>
    public static void Run(int rows, Bf16KernelArgs* args) =>
        ((delegate* unmanaged<Bf16KernelArgs*, void>)s_kernels![rows - 1])(args);

    // Registers: rdi the arguments; rsi/rcx rows 0/3 of A, rdx its stride; r11 the panel; rax the blocks left.
    // zmm0–11 the sums (row m, group g: 2m + g), zmm24–25 a depth pair of the two groups' weights, zmm26–31 the rows'
    // broadcast pairs.
    private static void Emit(X64Assembler asm, int rows)
    {
        var args = Gpr.Rdi;
        asm.MovLoad(Gpr.Rsi, new Mem(args, Displacement: 0));
        asm.MovLoad(Gpr.Rcx, new Mem(args, Displacement: 8));
        asm.MovLoad(Gpr.Rdx, new Mem(args, Displacement: 16));
        asm.MovLoad(Gpr.R11, new Mem(args, Displacement: 24));
        asm.MovLoad(Gpr.Rax, new Mem(args, Displacement: 32));
        for (int f = 0; f < 2 * rows; f++) asm.VpXorD(new Zmm(f), new Zmm(f), new Zmm(f));

        int loop = asm.Position;
        for (int pair = 0; pair < BlockDepths / 2; pair++)
        {
            asm.VmovDqu32(new Zmm(24), new Mem(Gpr.R11, Displacement: 64 * pair));
            asm.VmovDqu32(new Zmm(25), new Mem(Gpr.R11, Displacement: 512 + 64 * pair));
            for (int m = 0; m < rows; m++)
            {
                asm.VpBroadcastD(new Zmm(26 + m), GeneratedKernels.Row(Gpr.Rsi, Gpr.Rcx, Gpr.Rdx, m).Plus(4 * pair));
                asm.VdpBf16Ps(Sum(m, 0), new Zmm(24), new Zmm(26 + m));
                asm.VdpBf16Ps(Sum(m, 1), new Zmm(25), new Zmm(26 + m));
            }
        }
        asm.AddImm(Gpr.Rsi, 2 * BlockDepths);
        asm.AddImm(Gpr.Rcx, 2 * BlockDepths);
        asm.AddImm(Gpr.R11, PanelBlockBytes);
        asm.Dec(Gpr.Rax);
        asm.JumpIfNotZero(loop);

        GeneratedKernels.EmitStoreSums(asm, new Mem(args, Displacement: 40), rows);
    }

    private static Zmm Sum(int m, int g) => GeneratedKernels.Sum(m, g);
}

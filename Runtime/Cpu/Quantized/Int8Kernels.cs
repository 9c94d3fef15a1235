using System.Runtime.InteropServices;
using LoraRuntime.Cpu.Jit;
using X86 = System.Runtime.Intrinsics.X86;

namespace LoraRuntime.Cpu.Quantized;

/// <summary>The arguments of one generated micro-kernel call (the offsets are the generated code's).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct Int8KernelArgs
{
    public sbyte* A;        //  0: row 0's quants at the first block
    public sbyte* A3;       //  8: row 3's
    public long Lda;        // 16: bytes between quant rows
    public byte* Meta;      // 24: row 0's (compensation, scale) pairs at the first block
    public byte* Meta3;     // 32: row 3's
    public long LdMeta;     // 40: bytes between meta rows
    public byte* Panel;     // 48: the weight tile's first block
    public long Blocks;     // 56: blocks of 32 along K (≥ 1)
    public float* Output;   // 64: [rows, 32] float32, written
}

/// <summary>
/// Micro-kernels for Q8_0 × Q8_0 products with AVX-512 VNNI, generated at run time (<see cref="X64Assembler"/>): .NET
/// exposes VNNI only in its AVX-VNNI (VEX, 256-bit) and AVX10 forms, which AMD's Zen 4 and Intel's Ice Lake to Sapphire
/// Rapids lack although they multiply int8 with the 512-bit <c>vpdpbusd</c>, 64 multiply-adds an instruction (four
/// times a float32 FMA's). oneDNN and libxsmm generate their kernels the same way.
/// <para>
/// A kernel computes a tile of up to <see cref="MaxRows"/> activation rows × <see cref="TileColumns"/> weight rows over
/// the whole depth. Per block of 32 it starts each integer accumulator at the row's compensation (−offset·Σq: the
/// weights are stored unsigned, w + offset, so that the activations can be the signed, broadcast operand), adds eight
/// <c>vpdpbusd</c> of four depths × 16 weight rows, which leaves the block's exact integer dot products, then adds them
/// to the float32 sums scaled by d_w·d_a. The tile's weights are the panel <see cref="Int8Panel"/> lays out.
/// </para>
/// </summary>
internal static unsafe class Int8Kernels
{
    /// <summary>Activation rows of one call, at most.</summary>
    public const int MaxRows = 6;

    /// <summary>Weight rows (output columns) of one tile.</summary>
    public const int TileColumns = 32;

    /// <summary>Bytes of one block of a tile's panel: two groups of 16 columns × 32 depths, then their 32 float32 scales.</summary>
    public const int PanelBlockBytes = 2 * 512 + 2 * 64;

    /// <summary>Bytes of one (compensation, scale) pair of an activation block.</summary>
    public const int MetaBytes = 8;

    private static readonly nint[]? s_kernels = Generate(out s_unavailable);
    private static readonly string? s_unavailable;

    /// <summary>True where the kernels run here: AVX-512 VNNI, and generated code allowed (<see cref="ExecutableCode"/>).</summary>
    public static bool IsSupported => s_kernels is not null;

    /// <summary>Why the kernels do not run here (null where they do).</summary>
    public static string? Unavailable => s_unavailable;

    /// <summary>Runs the kernel for <paramref name="rows"/> (1…<see cref="MaxRows"/>) activation rows.</summary>
    public static void Run(int rows, Int8KernelArgs* args) =>
        ((delegate* unmanaged<Int8KernelArgs*, void>)s_kernels![rows - 1])(args);

    /// <summary>AVX-512 VNNI (CPUID leaf 7, ECX bit 11) with the 512-bit state the OS keeps (AVX-512F supported).</summary>
    public static bool CpuHasAvx512Vnni =>
        X86.Avx512F.IsSupported && X86.Avx512BW.IsSupported && (X86.X86Base.CpuId(7, 0).Ecx & (1 << 11)) != 0;

    private static nint[]? Generate(out string? unavailable) => GeneratedKernels.Generate(MaxRows, Emit,
        X86.X86Base.IsSupported && CpuHasAvx512Vnni ? null : "the CPU has no AVX-512 VNNI", out unavailable);

    // Registers: rdi the arguments; rsi/rcx rows 0/3 of A, rdx its row stride; r8/r10 rows 0/3 of the meta, r9 its
    // stride; r11 the panel; rax the blocks left. zmm0–11 the float sums (row m, group g: 2m + g), zmm12–23 the integer
    // block sums, zmm24–25 a depth quad of the two groups' weights, zmm26–27 their scales, zmm28–29 the scale products.
    private static void Emit(X64Assembler asm, int rows)
    {
        var args = Gpr.Rdi;
        asm.MovLoad(Gpr.Rsi, new Mem(args, Displacement: 0));
        asm.MovLoad(Gpr.Rcx, new Mem(args, Displacement: 8));
        asm.MovLoad(Gpr.Rdx, new Mem(args, Displacement: 16));
        asm.MovLoad(Gpr.R8, new Mem(args, Displacement: 24));
        asm.MovLoad(Gpr.R10, new Mem(args, Displacement: 32));
        asm.MovLoad(Gpr.R9, new Mem(args, Displacement: 40));
        asm.MovLoad(Gpr.R11, new Mem(args, Displacement: 48));
        asm.MovLoad(Gpr.Rax, new Mem(args, Displacement: 56));
        for (int f = 0; f < 2 * rows; f++) asm.VpXorD(new Zmm(f), new Zmm(f), new Zmm(f));

        int loop = asm.Position;
        for (int m = 0; m < rows; m++)
            for (int g = 0; g < 2; g++) asm.VpBroadcastD(Integer(m, g), Row(Gpr.R8, Gpr.R10, Gpr.R9, m));
        for (int quad = 0; quad < 8; quad++)
        {
            asm.VmovDqu32(new Zmm(24), new Mem(Gpr.R11, Displacement: 64 * quad));
            asm.VmovDqu32(new Zmm(25), new Mem(Gpr.R11, Displacement: 512 + 64 * quad));
            for (int m = 0; m < rows; m++)
            {
                var a = Row(Gpr.Rsi, Gpr.Rcx, Gpr.Rdx, m).Plus(4 * quad);
                asm.VpDpBusd(Integer(m, 0), new Zmm(24), a);
                asm.VpDpBusd(Integer(m, 1), new Zmm(25), a);
            }
        }
        asm.VmovUps(new Zmm(26), new Mem(Gpr.R11, Displacement: 1024));
        asm.VmovUps(new Zmm(27), new Mem(Gpr.R11, Displacement: 1088));
        for (int m = 0; m < rows; m++)
        {
            var scale = Row(Gpr.R8, Gpr.R10, Gpr.R9, m).Plus(4);
            for (int g = 0; g < 2; g++)
            {
                asm.VmulPs(new Zmm(28 + g), new Zmm(26 + g), scale);
                asm.VcvtDq2Ps(Integer(m, g), Integer(m, g));
                asm.VfmAdd231Ps(Sum(m, g), Integer(m, g), new Zmm(28 + g));
            }
        }
        asm.AddImm(Gpr.Rsi, 32);
        asm.AddImm(Gpr.Rcx, 32);
        asm.AddImm(Gpr.R8, MetaBytes);
        asm.AddImm(Gpr.R10, MetaBytes);
        asm.AddImm(Gpr.R11, PanelBlockBytes);
        asm.Dec(Gpr.Rax);
        asm.JumpIfNotZero(loop);

        GeneratedKernels.EmitStoreSums(asm, new Mem(args, Displacement: 64), rows);
    }

    private static Zmm Sum(int m, int g) => GeneratedKernels.Sum(m, g);

    private static Zmm Integer(int m, int g) => new(12 + 2 * m + g);

    private static Mem Row(Gpr row0, Gpr row3, Gpr stride, int m) => GeneratedKernels.Row(row0, row3, stride, m);
}

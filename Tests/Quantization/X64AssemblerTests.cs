using LoraRuntime.Cpu.Jit;
using Xunit;

namespace LoraRuntime.Tests.Quantization;

/// <summary>
/// The generated kernels' instructions encode as an assembler encodes them: every expected byte string below is LLVM's
/// (<c>llvm-mc -x86-asm-syntax=intel -show-encoding -mattr=+avx512f,+avx512vnni,+avx512bf16</c>), covering registers past 7 and
/// 15 in every field, SIB with and without an index, rsp and r13 bases, and each displacement size.
/// </summary>
public sealed class X64AssemblerTests
{
    public static TheoryData<string, string> Cases => new()
    {
        { "mov rsi, qword ptr [rdi + 8]", "48 8b 77 08" },
        { "mov r10, qword ptr [rdi]", "4c 8b 17" },
        { "mov r11, qword ptr [r12 + r9*2 + 0x100]", "4f 8b 9c 4c 00 01 00 00" },
        { "add rsi, 32", "48 83 c6 20" },
        { "add r11, 1152", "49 81 c3 80 04 00 00" },
        { "dec rax", "48 ff c8" },
        { "dec r9", "49 ff c9" },
        { "vpbroadcastd zmm12, dword ptr [r8 + r9*4]", "62 12 7d 48 58 24 88" },
        { "vpbroadcastd zmm23, dword ptr [r10]", "62 c2 7d 48 58 3a" },
        { "vpbroadcastd zmm3, dword ptr [r13 + 8]", "62 d2 7d 48 58 5d 02" },
        { "vpbroadcastd zmm3, dword ptr [rbp + 6]", "62 f2 7d 48 58 9d 06 00 00 00" },
        { "vmovdqu32 zmm24, zmmword ptr [r11 + 512]", "62 41 7e 48 6f 43 08" },
        { "vmovdqu32 zmm3, zmmword ptr [rsi + 64]", "62 f1 7e 48 6f 5e 01" },
        { "vmovdqu32 zmm3, zmmword ptr [rsi + 96]", "62 f1 7e 48 6f 9e 60 00 00 00" },
        { "vmovups zmm26, zmmword ptr [r11 + 1024]", "62 41 7c 48 10 53 10" },
        { "vmovups zmmword ptr [rsi + 128], zmm11", "62 71 7c 48 11 5e 02" },
        { "vmovups zmmword ptr [rsp + 64], zmm17", "62 e1 7c 48 11 4c 24 01" },
        { "vpdpbusd zmm12, zmm24, dword ptr [rsi + rdx*2 + 12]{1to16}", "62 72 3d 50 50 64 56 03" },
        { "vpdpbusd zmm23, zmm25, dword ptr [rcx + 28]{1to16}", "62 e2 35 50 50 79 07" },
        { "vpdpbusd zmm5, zmm1, dword ptr [r13 + r14*8]{1to16}", "62 92 75 58 50 6c f5 00" },
        { "vdpbf16ps zmm0, zmm24, zmm26", "62 92 3e 40 52 c2" },
        { "vdpbf16ps zmm11, zmm25, zmm31", "62 12 36 40 52 df" },
        { "vdpbf16ps zmm17, zmm3, zmm9", "62 c2 66 48 52 c9" },
        { "vdpbf16ps zmm5, zmm24, dword ptr [rsi + rdx*2 + 12]{1to16}", "62 f2 3e 50 52 6c 56 03" },
        { "vcvtdq2ps zmm12, zmm12", "62 51 7c 48 5b e4" },
        { "vcvtdq2ps zmm23, zmm7", "62 e1 7c 48 5b ff" },
        { "vmulps zmm28, zmm26, dword ptr [r8 + r9 + 4]{1to16}", "62 01 2c 50 59 64 08 01" },
        { "vmulps zmm2, zmm3, dword ptr [r10 + 4]{1to16}", "62 d1 64 58 59 52 01" },
        { "vfmadd231ps zmm0, zmm12, zmm28", "62 92 1d 48 b8 c4" },
        { "vfmadd231ps zmm11, zmm23, zmm29", "62 12 45 40 b8 dd" },
        { "vfmadd231ps zmm20, zmm5, zmm9", "62 c2 55 48 b8 e1" },
        { "vpxord zmm0, zmm0, zmm0", "62 f1 7d 48 ef c0" },
        { "vpxord zmm11, zmm11, zmm11", "62 51 25 48 ef db" },
        { "vpxord zmm17, zmm30, zmm18", "62 a1 0d 40 ef ca" },
        { "vzeroupper", "c5 f8 77" },
        { "ret", "c3" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Encodes_as_an_assembler_does(string instruction, string expected)
    {
        var asm = new X64Assembler();
        Emit(asm, instruction);
        Assert.Equal(expected, Convert.ToHexString(asm.Code).ToLowerInvariant().Chunk(2).Select(c => new string(c)).Aggregate((a, b) => a + " " + b));
    }

    [Fact]
    public void A_backward_branch_counts_from_the_end_of_the_jump()
    {
        var asm = new X64Assembler();
        asm.Dec(Gpr.Rax);              // 3 bytes at 0
        asm.JumpIfNotZero(0);          // 6 bytes: rel32 = 0 − 9
        Assert.Equal([0x48, 0xFF, 0xC8, 0x0F, 0x85, 0xF7, 0xFF, 0xFF, 0xFF], asm.Code.ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => asm.JumpIfNotZero(100));
        Assert.Throws<ArgumentException>(() => asm.VpBroadcastD(new Zmm(0), new Mem(Gpr.Rax, Gpr.Rsp)));
    }

    [Fact]
    public void Both_generated_kernel_families_compute_the_tile_the_product_lays_out()
    {
        Assert.Equal(LoraRuntime.Cpu.Quantized.Int8Kernels.TileColumns, LoraRuntime.Cpu.Quantized.Bf16Kernels.TileColumns);
        Assert.Equal(LoraRuntime.Cpu.Quantized.Int8Kernels.MaxRows, LoraRuntime.Cpu.Quantized.Bf16Kernels.MaxRows);
    }

    /// <summary>The test's own reading of the Intel-syntax line into the assembler's calls.</summary>
    private static void Emit(X64Assembler asm, string line)
    {
        int space = line.IndexOf(' ');
        string op = space < 0 ? line : line[..space];
        var args = space < 0 ? [] : line[(space + 1)..].Split(", ");
        switch (op)
        {
            case "mov": asm.MovLoad(G(args[0]), M(args[1])); break;
            case "add": asm.AddImm(G(args[0]), int.Parse(args[1])); break;
            case "dec": asm.Dec(G(args[0])); break;
            case "vpbroadcastd": asm.VpBroadcastD(Z(args[0]), M(args[1])); break;
            case "vmovdqu32": asm.VmovDqu32(Z(args[0]), M(args[1])); break;
            case "vmovups" when !args[0].Contains('[', StringComparison.Ordinal): asm.VmovUps(Z(args[0]), M(args[1])); break;
            case "vmovups": asm.VmovUps(M(args[0]), Z(args[1])); break;
            case "vpdpbusd": asm.VpDpBusd(Z(args[0]), Z(args[1]), M(args[2])); break;
            case "vdpbf16ps" when args[2].Contains('[', StringComparison.Ordinal): asm.VdpBf16Ps(Z(args[0]), Z(args[1]), M(args[2])); break;
            case "vdpbf16ps": asm.VdpBf16Ps(Z(args[0]), Z(args[1]), Z(args[2])); break;
            case "vcvtdq2ps": asm.VcvtDq2Ps(Z(args[0]), Z(args[1])); break;
            case "vmulps": asm.VmulPs(Z(args[0]), Z(args[1]), M(args[2])); break;
            case "vfmadd231ps": asm.VfmAdd231Ps(Z(args[0]), Z(args[1]), Z(args[2])); break;
            case "vpxord": asm.VpXorD(Z(args[0]), Z(args[1]), Z(args[2])); break;
            case "vzeroupper": asm.Vzeroupper(); break;
            case "ret": asm.Ret(); break;
            default: throw new ArgumentException(line);
        }
    }

    private static readonly string[] s_gprs = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];

    private static Gpr G(string name) => new(Array.IndexOf(s_gprs, name) is int i and >= 0 ? i : throw new ArgumentException(name));

    private static Zmm Z(string name) => new(int.Parse(name.AsSpan(3)));

    /// <summary>"dword ptr [base + index*scale + disp]{1to16}" (each part but the base optional).</summary>
    private static Mem M(string text)
    {
        string inner = text[(text.IndexOf('[') + 1)..text.IndexOf(']')];
        Gpr? baseRegister = null, index = null;
        int scale = 1, disp = 0;
        foreach (var part in inner.Split(" + "))
        {
            if (part.StartsWith("0x", StringComparison.Ordinal)) disp = Convert.ToInt32(part, 16);
            else if (char.IsDigit(part[0])) disp = int.Parse(part);
            else if (part.Contains('*')) { index = G(part[..part.IndexOf('*')]); scale = int.Parse(part[(part.IndexOf('*') + 1)..]); }
            else if (baseRegister is null) baseRegister = G(part);
            else index = G(part);
        }
        return new Mem(baseRegister!.Value, index, scale, disp);
    }
}

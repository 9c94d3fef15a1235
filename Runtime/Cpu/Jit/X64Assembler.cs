namespace LoraRuntime.Cpu.Jit;

/// <summary>A general-purpose register by its number (0 rax, 1 rcx, 2 rdx, 3 rbx, 4 rsp, 5 rbp, 6 rsi, 7 rdi, 8–15 r8–r15).</summary>
internal readonly record struct Gpr(int Number)
{
    public static readonly Gpr Rax = new(0), Rcx = new(1), Rdx = new(2), Rbx = new(3), Rsp = new(4), Rbp = new(5), Rsi = new(6), Rdi = new(7);
    public static readonly Gpr R8 = new(8), R9 = new(9), R10 = new(10), R11 = new(11), R12 = new(12), R13 = new(13), R14 = new(14), R15 = new(15);
}

/// <summary>A 512-bit vector register, zmm0–zmm31.</summary>
internal readonly record struct Zmm(int Number);

/// <summary>A memory operand [base + index·scale + displacement] (no index: <see cref="Index"/> null).</summary>
internal readonly record struct Mem(Gpr Base, Gpr? Index = null, int Scale = 1, int Displacement = 0)
{
    public Mem Plus(int bytes) => this with { Displacement = Displacement + bytes };
}

/// <summary>
/// The few x86-64 instructions the generated CPU kernels use, encoded as an assembler encodes them (the shortest
/// form: no displacement, or EVEX's compressed 8-bit displacement, before 32 bits; a SIB byte only where the operand
/// needs one), so that the bytes can be checked against an assembler's. Legacy encodings for the integer
/// bookkeeping, EVEX for the AVX-512 arithmetic. Code goes into a growable buffer; only backward branches exist.
/// </summary>
internal sealed class X64Assembler
{
    private byte[] _code = new byte[4096];

    /// <summary>Bytes emitted so far.</summary>
    public int Position { get; private set; }

    /// <summary>The code emitted so far.</summary>
    public ReadOnlySpan<byte> Code => _code.AsSpan(0, Position);

    // Integer bookkeeping.

    /// <summary>mov dst, qword [src].</summary>
    public void MovLoad(Gpr dst, Mem src)
    {
        Rex(wide: true, dst.Number, src.Index?.Number ?? 0, src.Base.Number);
        Emit(0x8B);
        ModRm(dst.Number, src, disp8Unit: 1);
    }

    /// <summary>add r, imm32 (the imm8 form where it fits).</summary>
    public void AddImm(Gpr r, int value)
    {
        Rex(wide: true, 0, 0, r.Number);
        bool small = value is >= sbyte.MinValue and <= sbyte.MaxValue;
        Emit(small ? (byte)0x83 : (byte)0x81);
        Emit((byte)(0xC0 | (r.Number & 7)));
        if (small) Emit((byte)(sbyte)value);
        else Int32(value);
    }

    /// <summary>dec r.</summary>
    public void Dec(Gpr r)
    {
        Rex(wide: true, 0, 0, r.Number);
        Emit(0xFF);
        Emit((byte)(0xC8 | (r.Number & 7)));
    }

    /// <summary>jnz to <paramref name="target"/>, a position already emitted (rel32).</summary>
    public void JumpIfNotZero(int target)
    {
        if (target > Position) throw new ArgumentOutOfRangeException(nameof(target), target, "only backward branches are supported");
        Emit(0x0F);
        Emit(0x85);
        Int32(target - (Position + 4));
    }

    /// <summary>vzeroupper: the upper halves cleared before returning to code that may use SSE.</summary>
    public void Vzeroupper()
    {
        Emit(0xC5);
        Emit(0xF8);
        Emit(0x77);
    }

    /// <summary>ret.</summary>
    public void Ret() => Emit(0xC3);

    // AVX-512 (EVEX.512).

    /// <summary>vpbroadcastd dst, dword [src].</summary>
    public void VpBroadcastD(Zmm dst, Mem src) => Evex(Map0F38, Pp66, dst.Number, NoVvvv, src, broadcast: false, 0x58, disp8Unit: 4);

    /// <summary>vmovdqu32 dst, zmmword [src].</summary>
    public void VmovDqu32(Zmm dst, Mem src) => Evex(Map0F, PpF3, dst.Number, NoVvvv, src, broadcast: false, 0x6F, disp8Unit: 64);

    /// <summary>vmovups dst, zmmword [src].</summary>
    public void VmovUps(Zmm dst, Mem src) => Evex(Map0F, PpNone, dst.Number, NoVvvv, src, broadcast: false, 0x10, disp8Unit: 64);

    /// <summary>vmovups zmmword [dst], src.</summary>
    public void VmovUps(Mem dst, Zmm src) => Evex(Map0F, PpNone, src.Number, NoVvvv, dst, broadcast: false, 0x11, disp8Unit: 64);

    /// <summary>vpdpbusd acc, u, dword [s]{1to16}: acc += Σ of four u8 (of <paramref name="u"/>) × s8 (the broadcast dword) products per lane.</summary>
    public void VpDpBusd(Zmm acc, Zmm u, Mem s) => Evex(Map0F38, Pp66, acc.Number, u.Number, s, broadcast: true, 0x50, disp8Unit: 4);

    /// <summary>vdpbf16ps acc, a, b: acc += the two bfloat16 products of each lane's pair (a·b), in float32.</summary>
    public void VdpBf16Ps(Zmm acc, Zmm a, Zmm b) => Evex(Map0F38, PpF3, acc.Number, a.Number, b, 0x52);

    /// <summary>vdpbf16ps acc, a, dword [b]{1to16}: as the register form with one pair broadcast to every lane.</summary>
    public void VdpBf16Ps(Zmm acc, Zmm a, Mem b) => Evex(Map0F38, PpF3, acc.Number, a.Number, b, broadcast: true, 0x52, disp8Unit: 4);

    /// <summary>vcvtdq2ps dst, src.</summary>
    public void VcvtDq2Ps(Zmm dst, Zmm src) => Evex(Map0F, PpNone, dst.Number, NoVvvv, src, 0x5B);

    /// <summary>vmulps dst, a, dword [b]{1to16}.</summary>
    public void VmulPs(Zmm dst, Zmm a, Mem b) => Evex(Map0F, PpNone, dst.Number, a.Number, b, broadcast: true, 0x59, disp8Unit: 4);

    /// <summary>vfmadd231ps acc, a, b: acc += a·b.</summary>
    public void VfmAdd231Ps(Zmm acc, Zmm a, Zmm b) => Evex(Map0F38, Pp66, acc.Number, a.Number, b, 0xB8);

    /// <summary>vpxord dst, a, b.</summary>
    public void VpXorD(Zmm dst, Zmm a, Zmm b) => Evex(Map0F, Pp66, dst.Number, a.Number, b, 0xEF);

    private const int Map0F = 1, Map0F38 = 2;
    private const int PpNone = 0, Pp66 = 1, PpF3 = 2;
    private const int NoVvvv = -1;

    /// <summary>An EVEX.512.W0 instruction with a register operand in ModRM.rm.</summary>
    private void Evex(int map, int pp, int reg, int vvvv, Zmm rm, byte opcode)
    {
        EvexPrefix(map, pp, reg, vvvv, x: (rm.Number >> 4) & 1, b: (rm.Number >> 3) & 1, broadcast: false);
        Emit(opcode);
        Emit((byte)(0xC0 | ((reg & 7) << 3) | (rm.Number & 7)));
    }

    /// <summary>An EVEX.512.W0 instruction with a memory operand; displacements compress by <paramref name="disp8Unit"/> (EVEX's N).</summary>
    private void Evex(int map, int pp, int reg, int vvvv, Mem rm, bool broadcast, byte opcode, int disp8Unit)
    {
        EvexPrefix(map, pp, reg, vvvv, x: ((rm.Index?.Number ?? 0) >> 3) & 1, b: (rm.Base.Number >> 3) & 1, broadcast);
        Emit(opcode);
        ModRm(reg, rm, disp8Unit);
    }

    private void EvexPrefix(int map, int pp, int reg, int vvvv, int x, int b, bool broadcast)
    {
        if (reg is < 0 or > 31) throw new ArgumentOutOfRangeException(nameof(reg), reg, "zmm0–zmm31");
        int v = vvvv == NoVvvv ? 0 : vvvv;
        Emit(0x62);
        // P0: R X B R' 0 0 m m, the register bits inverted.
        Emit((byte)(((~reg >> 3 & 1) << 7) | ((~x & 1) << 6) | ((~b & 1) << 5) | ((~reg >> 4 & 1) << 4) | map));
        // P1: W vvvv 1 pp (W0, vvvv inverted).
        Emit((byte)(((~v & 15) << 3) | 0x04 | pp));
        // P2: z L'L b V' aaa (512 bits, no mask).
        Emit((byte)((2 << 5) | ((broadcast ? 1 : 0) << 4) | ((~v >> 4 & 1) << 3)));
    }

    /// <summary>A REX prefix (W, and the fourth bits of ModRM.reg, SIB.index and the base).</summary>
    private void Rex(bool wide, int reg, int index, int rmBase)
    {
        int rex = 0x40 | (wide ? 8 : 0) | ((reg >> 3 & 1) << 2) | ((index >> 3 & 1) << 1) | (rmBase >> 3 & 1);
        if (rex != 0x40) Emit((byte)rex);
    }

    /// <summary>ModRM (and SIB, displacement) for a memory operand, the shortest encoding.</summary>
    private void ModRm(int reg, Mem m, int disp8Unit)
    {
        if (m.Index is { Number: 4 }) throw new ArgumentException("rsp cannot be an index register", nameof(m));
        int scaleBits = m.Scale switch
        {
            1 => 0, 2 => 1, 4 => 2, 8 => 3,
            _ => throw new ArgumentOutOfRangeException(nameof(m), m.Scale, "the scale is 1, 2, 4 or 8"),
        };
        int disp = m.Displacement, baseLow = m.Base.Number & 7;
        int mod = disp == 0 && baseLow != 5 ? 0
            : disp % disp8Unit == 0 && disp / disp8Unit is >= sbyte.MinValue and <= sbyte.MaxValue ? 1 : 2;
        bool sib = m.Index is not null || baseLow == 4;
        Emit((byte)((mod << 6) | ((reg & 7) << 3) | (sib ? 4 : baseLow)));
        if (sib) Emit((byte)((scaleBits << 6) | (((m.Index?.Number ?? 4) & 7) << 3) | baseLow));
        if (mod == 1) Emit((byte)(sbyte)(disp / disp8Unit));
        else if (mod == 2) Int32(disp);
    }

    private void Int32(int value)
    {
        for (int i = 0; i < 4; i++) Emit((byte)(value >> (8 * i)));
    }

    private void Emit(byte value)
    {
        if (Position == _code.Length) Array.Resize(ref _code, _code.Length * 2);
        _code[Position++] = value;
    }
}

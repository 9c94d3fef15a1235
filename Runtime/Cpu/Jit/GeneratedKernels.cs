namespace LoraRuntime.Cpu.Jit;

/// <summary>
/// What the generated micro-kernel families share: one kernel per activation-row count, each on a cache line of its
/// own, loaded into executable pages once; the reason when they cannot run here; and the addressing of up to six
/// activation rows from two row pointers and a stride.
/// </summary>
internal static unsafe class GeneratedKernels
{
    /// <summary>
    /// Emits <paramref name="emit"/>(asm, rows) for rows 1…<paramref name="maxRows"/> and loads them; null, with
    /// <paramref name="unavailable"/> saying why, when <paramref name="cpuProblem"/> is set or generated code cannot run.
    /// </summary>
    public static nint[]? Generate(int maxRows, Action<X64Assembler, int> emit, string? cpuProblem, out string? unavailable)
    {
        if (cpuProblem is not null) { unavailable = cpuProblem; return null; }
        if (!ExecutableCode.IsSupported)
        {
            unavailable = Environment.GetEnvironmentVariable(ExecutableCode.Variable) == "0"
                ? $"{ExecutableCode.Variable}=0" : "generated code runs on x86-64 Linux only";
            return null;
        }
        try
        {
            var asm = new X64Assembler();
            var starts = new int[maxRows];
            for (int rows = 1; rows <= maxRows; rows++)
            {
                while (asm.Position % 64 != 0) asm.Ret();
                starts[rows - 1] = asm.Position;
                emit(asm, rows);
            }
            byte* code = ExecutableCode.Load(asm.Code);
            unavailable = null;
            return starts.Select(s => (nint)(code + s)).ToArray();
        }
        catch (Exception e) when (e is InvalidOperationException or DllNotFoundException or EntryPointNotFoundException)
        {
            unavailable = e.Message;
            return null;
        }
    }

    /// <summary>The float32 sums of row m's 16-column group g: zmm(2m + g), zmm0–11 for six rows of a 32-column tile.</summary>
    public static Zmm Sum(int m, int g) => new(2 * m + g);

    /// <summary>
    /// The kernels' end: the [rows, 32] sums stored at the address held in <paramref name="output"/> (a pointer in the
    /// arguments), then vzeroupper and ret. Uses rsi.
    /// </summary>
    public static void EmitStoreSums(X64Assembler asm, Mem output, int rows)
    {
        asm.MovLoad(Gpr.Rsi, output);
        for (int m = 0; m < rows; m++)
            for (int g = 0; g < 2; g++) asm.VmovUps(new Mem(Gpr.Rsi, Displacement: 4 * (32 * m + 16 * g)), Sum(m, g));
        asm.Vzeroupper();
        asm.Ret();
    }

    /// <summary>Row m (0…5) of a row-major operand from the pointers to rows 0 and 3 and the stride: [r0], [r0+s], [r0+2s], [r3], [r0+4s], [r3+2s].</summary>
    public static Mem Row(Gpr row0, Gpr row3, Gpr stride, int m) => m switch
    {
        0 => new Mem(row0),
        1 => new Mem(row0, stride, 1),
        2 => new Mem(row0, stride, 2),
        3 => new Mem(row3),
        4 => new Mem(row0, stride, 4),
        5 => new Mem(row3, stride, 2),
        _ => throw new ArgumentOutOfRangeException(nameof(m), m, "rows 0 to 5"),
    };
}

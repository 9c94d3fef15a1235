using System.Runtime.InteropServices;
using LoraRuntime.Interop;

namespace LoraRuntime.Cpu.Jit;

/// <summary>
/// Machine code generated at run time, in pages of its own: mapped writable, filled, then read-and-execute for the
/// life of the process (never writable and executable at once). Generated kernels run on x86-64 Linux (the System V
/// calling convention they are written for); elsewhere, or with <c>LORA_CPU_JIT=0</c>, <see cref="IsSupported"/> is
/// false and callers take their managed path.
/// </summary>
internal static unsafe class ExecutableCode
{
    /// <summary>The environment variable that turns generated code off ("0").</summary>
    public const string Variable = "LORA_CPU_JIT";

    /// <summary>True where generated code can run here (x86-64 Linux, not turned off).</summary>
    public static bool IsSupported { get; } =
        OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64 && Environment.GetEnvironmentVariable(Variable) != "0";

    /// <summary>Copies <paramref name="code"/> into executable pages and returns their address (kept mapped for the process's life).</summary>
    public static byte* Load(ReadOnlySpan<byte> code)
    {
        if (!IsSupported) throw new PlatformNotSupportedException("generated CPU code runs on x86-64 Linux only");
        nuint length = (nuint)((code.Length + 4095) & ~4095);
        void* pages = Posix.mmap(null, length, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS, -1, 0);
        if (pages == Posix.MapFailed)
            throw new InvalidOperationException($"mmap of {length} bytes for generated code failed (errno {Marshal.GetLastPInvokeError()})");
        code.CopyTo(new Span<byte>(pages, code.Length));
        if (Posix.mprotect(pages, length, Posix.PROT_READ | Posix.PROT_EXEC) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            Posix.munmap(pages, length);
            throw new InvalidOperationException($"mprotect(read, execute) of generated code failed (errno {errno})");
        }
        return (byte*)pages;
    }
}

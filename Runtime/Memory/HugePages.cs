using System.Runtime.InteropServices;

namespace LoraRuntime.Memory;

/// <summary>
/// Transparent huge pages for large host blocks. Most Linux systems run THP in "madvise" mode, where a mapping gets
/// 2 MiB pages only if it asks; a 64 MiB weight matrix streamed through a GEMV then walks 16,384 4-KiB pages and
/// pays a TLB miss on each. NumPy (and so OpenBLAS through it) asks for every array of 4 MiB or more; so do we.
/// Advice only: where the call or THP is unavailable the block simply keeps small pages.
/// </summary>
internal static unsafe partial class HugePages
{
    /// <summary>The huge-page size THP uses on x86-64 and most arm64 kernels.</summary>
    public const long PageBytes = 2L << 20;

    /// <summary>Blocks from this size up are aligned to <see cref="PageBytes"/> and advised (NumPy's threshold).</summary>
    public const long ThresholdBytes = 4L << 20;

    private const int MadvHugepage = 14;
    private static bool s_unavailable = !OperatingSystem.IsLinux();

    /// <summary>Asks the kernel to back [block, block + bytes) with huge pages; block is <see cref="PageBytes"/>-aligned.</summary>
    public static void Advise(void* block, long bytes)
    {
        if (s_unavailable) return;
        long whole = bytes / PageBytes * PageBytes;
        if (whole == 0) return;
        try
        {
            _ = Madvise(block, (nuint)whole, MadvHugepage); // EINVAL where THP is compiled out: nothing to do
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            s_unavailable = true;
        }
    }

    [LibraryImport("libc.so.6", EntryPoint = "madvise")]
    private static partial int Madvise(void* address, nuint length, int advice);
}

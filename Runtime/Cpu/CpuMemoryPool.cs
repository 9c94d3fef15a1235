using System.Runtime.InteropServices;
using LoraRuntime.Memory;

namespace LoraRuntime.Cpu;

/// <summary>
/// The CPU pool: 64-byte-aligned native memory (one cache line, one AVX-512 vector); blocks of 4 MiB or more are
/// 2 MiB-aligned and advised to use transparent huge pages (<see cref="HugePages"/>).
/// </summary>
public sealed unsafe class CpuMemoryPool : MemoryPool
{
    /// <summary>Alignment of every block.</summary>
    public const int Alignment = 64;

    /// <inheritdoc/>
    public override string Name => "cpu";

    /// <inheritdoc/>
    protected override nint Allocate(long bytes)
    {
        try
        {
            if (bytes < HugePages.ThresholdBytes) return (nint)NativeMemory.AlignedAlloc((nuint)bytes, Alignment);
            void* block = NativeMemory.AlignedAlloc((nuint)bytes, (nuint)HugePages.PageBytes);
            HugePages.Advise(block, bytes);
            return (nint)block;
        }
        catch (OutOfMemoryException)
        {
            return 0;
        }
    }

    /// <inheritdoc/>
    protected override void Free(nint block) => NativeMemory.AlignedFree((void*)block);
}

using System.Runtime.InteropServices;
using LoraRuntime.Memory;

namespace LoraRuntime.Cpu;

/// <summary>The CPU pool: 64-byte-aligned native memory (one cache line, one AVX-512 vector).</summary>
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
            return (nint)NativeMemory.AlignedAlloc((nuint)bytes, Alignment);
        }
        catch (OutOfMemoryException)
        {
            return 0;
        }
    }

    /// <inheritdoc/>
    protected override void Free(nint block) => NativeMemory.AlignedFree((void*)block);
}

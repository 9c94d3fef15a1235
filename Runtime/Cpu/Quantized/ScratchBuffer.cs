using System.Runtime.InteropServices;

namespace LoraRuntime.Cpu.Quantized;

/// <summary>
/// Native scratch memory, 64-byte aligned, that grows to the largest request and is kept: the per-call and per-worker
/// buffers of the stored-weight products, so that a warm call allocates nothing. Not thread-safe; one owner each.
/// </summary>
internal unsafe struct ScratchBuffer
{
    private void* _pointer;
    private long _bytes;

    /// <summary>At least <paramref name="bytes"/> bytes (their contents undefined after growing).</summary>
    public void* Reserve(long bytes)
    {
        if (bytes > _bytes)
        {
            if (_pointer != null) NativeMemory.AlignedFree(_pointer);
            _pointer = NativeMemory.AlignedAlloc((nuint)bytes, 64);
            _bytes = bytes;
        }
        return _pointer;
    }

    /// <summary>Frees the memory (the buffer can be reserved again).</summary>
    public void Free()
    {
        if (_pointer != null) NativeMemory.AlignedFree(_pointer);
        _pointer = null;
        _bytes = 0;
    }
}

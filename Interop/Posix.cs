using System.Runtime.InteropServices;

namespace LoraRuntime.Interop;

#pragma warning disable CA1707, IDE1006 // the names are the header's

/// <summary>
/// Raw bindings to the C library's memory-mapping calls (<c>sys/mman.h</c>), for the machine code the CPU backend
/// generates: pages mapped writable, filled, then made executable and never writable again. The constants are
/// Linux's (the generated code's only home).
/// </summary>
public static unsafe partial class Posix
{
    private const string Library = "libc";

    /// <summary>PROT_READ.</summary>
    public const int PROT_READ = 1;

    /// <summary>PROT_WRITE.</summary>
    public const int PROT_WRITE = 2;

    /// <summary>PROT_EXEC.</summary>
    public const int PROT_EXEC = 4;

    /// <summary>MAP_PRIVATE.</summary>
    public const int MAP_PRIVATE = 0x02;

    /// <summary>MAP_ANONYMOUS on Linux.</summary>
    public const int MAP_ANONYMOUS = 0x20;

    /// <summary>MAP_FAILED.</summary>
    public static readonly void* MapFailed = (void*)-1;

    /// <summary>void* mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset).</summary>
    [LibraryImport(Library, EntryPoint = "mmap", SetLastError = true)]
    public static partial void* mmap(void* addr, nuint length, int prot, int flags, int fd, nint offset);

    /// <summary>int mprotect(void* addr, size_t length, int prot).</summary>
    [LibraryImport(Library, EntryPoint = "mprotect", SetLastError = true)]
    public static partial int mprotect(void* addr, nuint length, int prot);

    /// <summary>int munmap(void* addr, size_t length).</summary>
    [LibraryImport(Library, EntryPoint = "munmap", SetLastError = true)]
    public static partial int munmap(void* addr, nuint length);
}

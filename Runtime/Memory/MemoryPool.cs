namespace LoraRuntime.Memory;

/// <summary>
/// A caching allocator. Freed blocks go back to a per-size-class cache and are handed out again without
/// touching the system; <see cref="Trim"/> gives the cache back. When the system refuses a block, the cache is
/// emptied and the request retried once before a clear <see cref="InsufficientMemoryException"/>.
/// Thread-safe. Derived pools supply the system calls (aligned host memory, device memory).
/// </summary>
public abstract class MemoryPool : IDisposable
{
    private readonly object _lock = new();
    private readonly nint[][] _free;
    private readonly int[] _freeCount;
    private long _inUse, _reserved, _peak, _hits, _misses, _sysAllocs, _sysFrees;
    private bool _disposed;

    /// <summary>Creates an empty pool.</summary>
    protected MemoryPool()
    {
        _free = new nint[SizeClasses.Count][];
        _freeCount = new int[SizeClasses.Count];
    }

    /// <summary>A short name for messages ("cpu", "cuda:0").</summary>
    public abstract string Name { get; }

    /// <summary>Rents a block of at least <paramref name="bytes"/> bytes; returns its address and size class.</summary>
    public nint Rent(long bytes, out int sizeClass)
    {
        if (bytes <= 0 || bytes > SizeClasses.MaxBlockBytes)
            throw new ArgumentOutOfRangeException(nameof(bytes), bytes,
                $"a block must be 1 byte to {SizeClasses.MaxBlockBytes} bytes");
        sizeClass = SizeClasses.ClassOf(bytes);
        long size = SizeClasses.SizeOf(sizeClass);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            nint block;
            if (_freeCount[sizeClass] > 0)
            {
                block = _free[sizeClass][--_freeCount[sizeClass]];
                _hits++;
            }
            else
            {
                _misses++;
                block = AllocateOrRetry(size);
                _reserved += size;
                _sysAllocs++;
            }
            _inUse += size;
            if (_inUse > _peak) _peak = _inUse;
            return block;
        }
    }

    /// <summary>Returns a block rented with <see cref="Rent"/> to the cache.</summary>
    public void Return(nint block, int sizeClass)
    {
        long size = SizeClasses.SizeOf(sizeClass);
        lock (_lock)
        {
            _inUse -= size;
            if (_disposed)
            {
                Free(block);
                _reserved -= size;
                _sysFrees++;
                return;
            }
            ref nint[] stack = ref _free[sizeClass];
            stack ??= new nint[4];
            if (_freeCount[sizeClass] == stack.Length) Array.Resize(ref stack, stack.Length * 2);
            stack[_freeCount[sizeClass]++] = block;
        }
    }

    /// <summary>Gives every cached (free) block back to the system; blocks in use are untouched.</summary>
    public void Trim()
    {
        lock (_lock) TrimLocked();
    }

    /// <summary>Resets <see cref="PoolStats.PeakBytesInUse"/> to the bytes in use now.</summary>
    public void ResetPeak()
    {
        lock (_lock) _peak = _inUse;
    }

    /// <summary>A consistent snapshot of the counters.</summary>
    public PoolStats Stats
    {
        get
        {
            lock (_lock) return new PoolStats(_inUse, _reserved, _peak, _hits, _misses, _sysAllocs, _sysFrees);
        }
    }

    /// <summary>Gets a block of exactly <paramref name="bytes"/> bytes from the system, or returns 0 when it has none.</summary>
    protected abstract nint Allocate(long bytes);

    /// <summary>Gives a block back to the system.</summary>
    protected abstract void Free(nint block);

    private nint AllocateOrRetry(long size)
    {
        nint block = Allocate(size);
        if (block != 0) return block;
        TrimLocked();
        block = Allocate(size);
        if (block != 0) return block;
        throw new InsufficientMemoryException(
            $"{Name} pool: out of memory allocating {size} bytes after freeing the cache " +
            $"(in use {_inUse} bytes, reserved {_reserved} bytes)");
    }

    private void TrimLocked()
    {
        for (int c = 0; c < _freeCount.Length; c++)
        {
            long size = SizeClasses.SizeOf(c);
            for (int i = 0; i < _freeCount[c]; i++)
            {
                Free(_free[c][i]);
                _reserved -= size;
                _sysFrees++;
            }
            _freeCount[c] = 0;
        }
    }

    /// <summary>Frees the cache; blocks still rented are freed when they come back.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            TrimLocked();
            _disposed = true;
        }
        GC.SuppressFinalize(this);
    }
}

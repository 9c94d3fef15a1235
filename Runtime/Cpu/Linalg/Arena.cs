using LoraRuntime.Memory;

namespace LoraRuntime.Cpu.Linalg;

/// <summary>
/// The scratch memory of one linear-algebra call, carved from blocks of the backend's pool: rented when the call
/// starts (one block sized by the caller's estimate), handed out as 64-byte-aligned float64 arrays by a bump pointer
/// with stack discipline (<see cref="Mark"/> / <see cref="Release"/>), and all returned on <see cref="Dispose"/>.
/// A request past the estimate rents one more block rather than failing, so an estimate that is a little short costs
/// a pool call, never a wrong answer. Sizes come from validated shapes only.
/// </summary>
internal sealed unsafe class Arena : IDisposable
{
    private const int AlignDoubles = 8; // 64 bytes
    private readonly MemoryPool _pool;
    private readonly List<(nint Block, int SizeClass, long Doubles)> _blocks = [];
    private int _current;  // index of the block being carved
    private long _used;    // doubles used in the current block

    /// <summary>An arena whose first block holds <paramref name="estimateDoubles"/> doubles.</summary>
    public Arena(MemoryPool pool, long estimateDoubles)
    {
        _pool = pool;
        AddBlock(Math.Max(estimateDoubles, 1024));
    }

    /// <summary>A position to <see cref="Release"/> back to.</summary>
    public readonly record struct Position(int Block, long Used);

    /// <summary>The current position: everything taken after it is given back by <see cref="Release"/>.</summary>
    public Position Mark() => new(_current, _used);

    /// <summary>Gives back everything taken since <paramref name="mark"/>.</summary>
    public void Release(Position mark)
    {
        _current = mark.Block;
        _used = mark.Used;
    }

    /// <summary><paramref name="count"/> doubles, 64-byte aligned, with unspecified contents.</summary>
    public double* Take(long count)
    {
        long need = (Math.Max(count, 1) + AlignDoubles - 1) / AlignDoubles * AlignDoubles;
        while (_used + need > _blocks[_current].Doubles)
        {
            if (_current + 1 == _blocks.Count) AddBlock(Math.Max(need, _blocks[_current].Doubles));
            _current++;
            _used = 0;
        }
        double* p = (double*)_blocks[_current].Block + _used;
        _used += need;
        return p;
    }

    /// <summary><paramref name="count"/> doubles set to zero.</summary>
    public double* Zeroed(long count)
    {
        double* p = Take(count);
        for (long i = 0; i < count; i += int.MaxValue)
            new Span<double>(p + i, (int)Math.Min(int.MaxValue, count - i)).Clear();
        return p;
    }

    /// <summary><paramref name="count"/> ints (taken as doubles' room, so alignment holds).</summary>
    public int* TakeInts(long count) => (int*)Take((count + 1) / 2);

    private void AddBlock(long doubles)
    {
        nint block = _pool.Rent(checked(doubles * sizeof(double)), out int sizeClass);
        _blocks.Add((block, sizeClass, doubles));
    }

    /// <summary>Returns every block to the pool.</summary>
    public void Dispose()
    {
        foreach (var (block, sizeClass, _) in _blocks) _pool.Return(block, sizeClass);
        _blocks.Clear();
    }
}

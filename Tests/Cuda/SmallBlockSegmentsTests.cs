using System.Runtime.InteropServices;
using LoraRuntime.Cuda;
using Xunit;

namespace LoraRuntime.Tests.Cuda;

/// <summary>
/// The small pool of the CUDA allocator, over host memory as its segment source (it only does address arithmetic on
/// segments, so host blocks exercise exactly the code the device uses).
/// </summary>
public sealed unsafe class SmallBlockSegmentsTests : IDisposable
{
    private readonly List<nint> _live = [];
    private int _allocated, _freed;
    private bool _refuse;

    private nint AllocateSegment(long bytes)
    {
        Assert.Equal(SmallBlockSegments.SegmentBytes, bytes);
        if (_refuse) return 0;
        nint p = (nint)NativeMemory.AlignedAlloc((nuint)bytes, 512);
        _live.Add(p);
        _allocated++;
        return p;
    }

    private void FreeSegment(nint segment)
    {
        Assert.True(_live.Remove(segment), $"segment 0x{segment:x} freed twice or never allocated");
        NativeMemory.AlignedFree((void*)segment);
        _freed++;
    }

    public void Dispose()
    {
        foreach (nint p in _live) NativeMemory.AlignedFree((void*)p);
    }

    [Fact]
    public void Blocks_of_one_size_share_a_segment_until_it_is_full()
    {
        var pool = new SmallBlockSegments(AllocateSegment, FreeSegment);
        const long size = 512 * 1024; // four per segment
        var blocks = Enumerable.Range(0, 5).Select(_ => pool.Allocate(size)).ToArray();
        Assert.Equal(2, _allocated);
        Assert.Equal(blocks.Length, blocks.Distinct().Count());
        // The first four tile one segment exactly, 128-byte aligned, without overlap.
        var first = blocks.Take(4).Order().ToArray();
        for (int i = 1; i < 4; i++) Assert.Equal(size, first[i] - first[i - 1]);
        Assert.All(blocks, b => Assert.Equal(0, b % 128));
        Assert.All(blocks, b => Assert.True(pool.Owns(b)));
    }

    [Fact]
    public void A_segment_goes_back_when_its_last_block_does()
    {
        var pool = new SmallBlockSegments(AllocateSegment, FreeSegment);
        nint a = pool.Allocate(1024), b = pool.Allocate(1024), c = pool.Allocate(640);
        Assert.Equal(2, pool.SegmentCount); // one segment per block size
        pool.Free(a);
        Assert.Equal(0, _freed);
        pool.Free(b);
        Assert.Equal(1, _freed);
        Assert.False(pool.Owns(a));
        pool.Free(c);
        Assert.Equal(2, _freed);
        Assert.Equal(0, pool.SegmentCount);
    }

    [Fact]
    public void A_freed_slot_is_reused_and_a_full_segment_regains_room()
    {
        var pool = new SmallBlockSegments(AllocateSegment, FreeSegment);
        const long size = SmallBlockSegments.MaxBlockBytes; // two per segment
        nint a = pool.Allocate(size), b = pool.Allocate(size);
        Assert.Equal(1, _allocated);
        pool.Free(a);
        Assert.Equal(a, pool.Allocate(size));
        Assert.Equal(1, _allocated);
        pool.Free(b);
        Assert.Equal(b, pool.Allocate(size));
    }

    [Fact]
    public void No_segment_from_the_source_gives_zero_and_bad_input_is_refused()
    {
        var pool = new SmallBlockSegments(AllocateSegment, FreeSegment);
        _refuse = true;
        Assert.Equal(0, pool.Allocate(4096));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Allocate(SmallBlockSegments.MaxBlockBytes + 128));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Allocate(100));
        _refuse = false;
        nint block = pool.Allocate(4096);
        var e = Assert.Throws<ArgumentException>(() => pool.Free(block + 128));
        Assert.Equal("block", e.ParamName);
        Assert.Throws<ArgumentException>(() => pool.Free(12345));
    }

    [Fact]
    public void Every_small_size_class_is_a_multiple_of_128_bytes()
    {
        for (int c = 0; LoraRuntime.Memory.SizeClasses.SizeOf(c) <= SmallBlockSegments.MaxBlockBytes; c++)
        {
            long size = LoraRuntime.Memory.SizeClasses.SizeOf(c);
            Assert.Equal(0, size % 128);
            var pool = new SmallBlockSegments(AllocateSegment, FreeSegment);
            pool.Free(pool.Allocate(size));
        }
    }
}

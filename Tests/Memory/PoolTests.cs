using LoraRuntime.Cpu;
using LoraRuntime.Memory;
using Xunit;

namespace LoraRuntime.Tests.Memory;

public sealed class SizeClassTests
{
    [Fact]
    public void ClassesCoverEveryRequestWithAtMostAQuarterWasted()
    {
        for (long bytes = 1; bytes < 1 << 20; bytes += bytes < 4096 ? 1 : 97)
        {
            int c = SizeClasses.ClassOf(bytes);
            long size = SizeClasses.SizeOf(c);
            Assert.True(size >= bytes, $"{bytes} → class {c} of {size}");
            if (c > 0) Assert.True(SizeClasses.SizeOf(c - 1) < bytes, $"{bytes} should fit a smaller class than {c}");
            if (bytes > SizeClasses.MinBlockBytes) Assert.True(size <= bytes * 1.25 + 1, $"{bytes} → {size}");
        }
    }

    [Fact]
    public void ClassSizesIncreaseStrictly()
    {
        for (int c = 1; c < SizeClasses.Count; c++)
            Assert.True(SizeClasses.SizeOf(c) > SizeClasses.SizeOf(c - 1));
        Assert.Equal(SizeClasses.MaxBlockBytes, SizeClasses.SizeOf(SizeClasses.Count - 1));
    }
}

public sealed class CpuMemoryPoolTests
{
    [Fact]
    public unsafe void LargeBlocksAreHugePageAlignedAndUsable()
    {
        using var pool = new CpuMemoryPool();
        const long bytes = 5L << 20; // past the 4 MiB threshold where blocks are advised for transparent huge pages
        nint block = pool.Rent(bytes, out int sizeClass);
        Assert.Equal(0, block % (2L << 20));
        var span = new Span<byte>((void*)block, (int)bytes);
        span.Fill(0x5A);
        Assert.Equal(0x5A, span[^1]);
        pool.Return(block, sizeClass);
        Assert.Equal(block, pool.Rent(bytes, out _)); // cached like any other block
    }

    [Fact]
    public unsafe void BlocksAreAlignedAndReusedFromTheCache()
    {
        using var pool = new CpuMemoryPool();
        nint a = pool.Rent(1000, out int ca);
        Assert.Equal(0, a % CpuMemoryPool.Alignment);
        pool.Return(a, ca);
        nint b = pool.Rent(900, out int cb); // same class (897..1024)
        Assert.Equal(a, b);
        var s = pool.Stats;
        Assert.Equal(1, s.CacheHits);
        Assert.Equal(1, s.CacheMisses);
        Assert.Equal(1, s.SystemAllocations);
        Assert.Equal(SizeClasses.SizeOf(cb), s.BytesInUse);
        pool.Return(b, cb);
    }

    [Fact]
    public void StatsTrackInUseReservedAndPeakAndTrimFreesTheCache()
    {
        using var pool = new CpuMemoryPool();
        nint a = pool.Rent(4096, out int ca);
        nint b = pool.Rent(8192, out int cb);
        Assert.Equal(4096 + 8192, pool.Stats.BytesInUse);
        pool.Return(a, ca);
        var s = pool.Stats;
        Assert.Equal(8192, s.BytesInUse);
        Assert.Equal(4096 + 8192, s.BytesReserved);
        Assert.Equal(4096 + 8192, s.PeakBytesInUse);
        pool.Trim();
        s = pool.Stats;
        Assert.Equal(8192, s.BytesReserved);
        Assert.Equal(1, s.SystemFrees);
        pool.ResetPeak();
        Assert.Equal(8192, pool.Stats.PeakBytesInUse);
        pool.Return(b, cb);
    }

    [Fact]
    public void AbsurdRequestsAreRefusedClearly()
    {
        using var pool = new CpuMemoryPool();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(SizeClasses.MaxBlockBytes + 1, out _));
        Assert.Equal("bytes", e.ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(0, out _));
    }

    [Fact]
    public void ConcurrentRentAndReturnKeepCountsExact()
    {
        using var pool = new CpuMemoryPool();
        Parallel.For(0, 8, t =>
        {
            for (int i = 0; i < 2000; i++)
            {
                nint p = pool.Rent(512 + (i % 7) * 300, out int c);
                pool.Return(p, c);
            }
        });
        var s = pool.Stats;
        Assert.Equal(0, s.BytesInUse);
        Assert.Equal(8 * 2000, s.CacheHits + s.CacheMisses);
    }
}

public sealed class TensorTests
{
    private static readonly CpuBackend s_cpu = new();

    [Fact]
    public void AllocateDisposeReturnsTheBlockToThePool()
    {
        using var cpu = new CpuBackend();
        var t = cpu.Allocate(10, 20);
        Assert.Equal(new Shape(10, 20), t.Shape);
        Assert.True(cpu.Pool.Stats.BytesInUse >= 800);
        t.Dispose();
        Assert.Equal(0, cpu.Pool.Stats.BytesInUse);
        Assert.Throws<ObjectDisposedException>(() => t.AsSpan());
        t.Dispose(); // twice is harmless
    }

    [Fact]
    public void ViewsShareMemoryAndCheckBounds()
    {
        using var t = s_cpu.FromArray([0, 1, 2, 3, 4, 5], 2, 3);
        var v = t.View(2, new Shape(2, 2));
        Assert.Equal([2f, 3, 4, 5], v.ToArray());
        v.AsSpan()[0] = 9;
        Assert.Equal(9, t.AsSpan()[2]);
        var r = t.Reshape(3, 2);
        Assert.Equal(new Shape(3, 2), r.Shape);
        Assert.Throws<ArgumentOutOfRangeException>(() => t.View(5, new Shape(2)));
        Assert.Throws<ArgumentException>(() => t.Reshape(4, 2));
        v.Dispose(); // a view owns nothing
        Assert.Equal(9, t.AsSpan()[2]);
    }

    [Fact]
    public void ShapesValidateAndCompare()
    {
        Assert.Equal(24, new Shape(2, 3, 4).Length);
        Assert.Equal(6, new Shape(2, 3, 4).Rows);
        Assert.Equal(4, new Shape(2, 3, 4)[-1]);
        Assert.Equal("[2, 3, 4]", new Shape(2, 3, 4).ToString());
        Assert.Equal(new Shape(2, 3), new Shape(2, 3));
        Assert.NotEqual(new Shape(2, 3), new Shape(3, 2));
        Assert.Throws<ArgumentException>(() => new Shape(1, 2, 3, 4, 5));
        var e = Assert.Throws<ArgumentException>(() => new Shape(2, -1));
        Assert.Contains("-1", e.Message);
    }

    [Fact]
    public void CopiesCheckLengthsAndDtypes()
    {
        using var t = s_cpu.Zeros(4);
        Assert.Throws<ArgumentException>(() => t.CopyFrom(new float[5]));
        using var ids = s_cpu.Allocate(DType.I32, new Shape(3));
        ids.CopyFrom([1, 2, 3]);
        Assert.Equal([1, 2, 3], ids.AsInt32Span().ToArray());
        Assert.Throws<InvalidOperationException>(() => ids.AsSpan());
        using var u = s_cpu.FromArray([1, 2, 3, 4], 4);
        s_cpu.Copy(t, u);
        Assert.Equal([1f, 2, 3, 4], t.ToArray());
        s_cpu.Fill(t, 7);
        Assert.Equal([7f, 7, 7, 7], t.ToArray());
    }
}

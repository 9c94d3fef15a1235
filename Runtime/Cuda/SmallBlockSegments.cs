namespace LoraRuntime.Cuda;

/// <summary>
/// The small pool of the CUDA allocator (as PyTorch's): blocks of at most <see cref="MaxBlockBytes"/> are carved out of
/// <see cref="SegmentBytes"/> segments, one block size per segment, so that many small tensors cost one device
/// allocation and a segment goes back to the device as soon as its last block does. The segment source is a pair of
/// functions (device memory in the backend, host memory in tests). Not thread-safe: the pool calls it under its lock.
/// </summary>
internal sealed class SmallBlockSegments
{
    /// <summary>The largest block served from segments (1 MiB).</summary>
    public const long MaxBlockBytes = 1L << 20;

    /// <summary>The size of a segment (2 MiB).</summary>
    public const long SegmentBytes = 2L << 20;

    private sealed class Segment(nint start, long blockBytes)
    {
        public readonly nint Start = start;
        public readonly long BlockBytes = blockBytes;
        public readonly Stack<int> FreeSlots = new(Enumerable.Range(0, (int)(SegmentBytes / blockBytes)).Reverse());
        public int Live;
    }

    private readonly Func<long, nint> _allocateSegment;
    private readonly Action<nint> _freeSegment;
    private readonly SortedList<nint, Segment> _segments = [];
    private readonly Dictionary<long, List<Segment>> _withRoom = [];

    /// <summary>Segments come from <paramref name="allocateSegment"/> (0 when there is no memory) and go back to <paramref name="freeSegment"/>.</summary>
    public SmallBlockSegments(Func<long, nint> allocateSegment, Action<nint> freeSegment)
    {
        _allocateSegment = allocateSegment;
        _freeSegment = freeSegment;
    }

    /// <summary>Segments held from the source.</summary>
    public int SegmentCount => _segments.Count;

    /// <summary>A block of <paramref name="blockBytes"/> (a multiple of 128, at most <see cref="MaxBlockBytes"/>), or 0 when no segment can be had.</summary>
    public nint Allocate(long blockBytes)
    {
        if (blockBytes <= 0 || blockBytes > MaxBlockBytes || blockBytes % 128 != 0)
            throw new ArgumentOutOfRangeException(nameof(blockBytes), blockBytes, $"blockBytes: expected a multiple of 128 in (0, {MaxBlockBytes}]");
        if (!_withRoom.TryGetValue(blockBytes, out var candidates)) _withRoom[blockBytes] = candidates = [];
        if (candidates.Count == 0)
        {
            nint start = _allocateSegment(SegmentBytes);
            if (start == 0) return 0;
            var segment = new Segment(start, blockBytes);
            _segments.Add(start, segment);
            candidates.Add(segment);
        }
        var chosen = candidates[^1];
        int slot = chosen.FreeSlots.Pop();
        chosen.Live++;
        if (chosen.FreeSlots.Count == 0) candidates.RemoveAt(candidates.Count - 1);
        return chosen.Start + (nint)(slot * blockBytes);
    }

    /// <summary>True when <paramref name="block"/> lies in one of the segments.</summary>
    public bool Owns(nint block) => Find(block) is not null;

    /// <summary>Gives <paramref name="block"/> back; its segment returns to the source when it holds no live block.</summary>
    public void Free(nint block)
    {
        var segment = Find(block) ?? throw new ArgumentException($"block: 0x{block:x} is not in any small-pool segment", nameof(block));
        long offset = block - segment.Start;
        if (offset % segment.BlockBytes != 0)
            throw new ArgumentException($"block: 0x{block:x} is not the start of a {segment.BlockBytes}-byte block", nameof(block));
        bool wasFull = segment.FreeSlots.Count == 0;
        segment.FreeSlots.Push((int)(offset / segment.BlockBytes));
        segment.Live--;
        var candidates = _withRoom[segment.BlockBytes];
        if (segment.Live == 0)
        {
            candidates.Remove(segment);
            _segments.Remove(segment.Start);
            _freeSegment(segment.Start);
        }
        else if (wasFull) candidates.Add(segment);
    }

    private Segment? Find(nint block)
    {
        // The last segment starting at or before block, if block lies inside it.
        var keys = _segments.Keys;
        int lo = 0, hi = keys.Count - 1, found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (keys[mid] <= block)
            {
                found = mid;
                lo = mid + 1;
            }
            else hi = mid - 1;
        }
        if (found < 0) return null;
        var segment = _segments.Values[found];
        return block - segment.Start < SegmentBytes ? segment : null;
    }
}

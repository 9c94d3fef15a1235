using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace LoraRuntime.IO;

/// <summary>
/// A safetensors file, memory-mapped and read lazily: opening parses and checks the header only; a tensor's bytes are
/// read when asked for. The reader is strict: a file that breaks the format in any way (see
/// <see cref="Open"/>) is rejected with an <see cref="InvalidDataException"/> naming the file, the tensor and the
/// problem, and nothing is ever allocated from a header value that has not been checked against the file's length.
/// </summary>
/// <remarks>
/// Reads may run concurrently; <see cref="Dispose"/> must not. Spans from <see cref="TryGetFloat32Span"/> point into
/// the mapping and are valid until <see cref="Dispose"/>. The file must not be truncated while it is open.
/// </remarks>
public sealed unsafe partial class SafetensorsReader : IDisposable
{
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _data; // the start of the data region in the mapping
    private readonly SafetensorsHeader _header;
    private bool _disposed;

    private SafetensorsReader(string path, long fileLength, MemoryMappedFile map, MemoryMappedViewAccessor view, byte* data, SafetensorsHeader header)
    {
        Path = path;
        FileLength = fileLength;
        _map = map;
        _view = view;
        _data = data;
        _header = header;
        Entries = Array.AsReadOnly(header.Entries);
    }

    /// <summary>The path the file was opened with.</summary>
    public string Path { get; }

    /// <summary>The file's length in bytes.</summary>
    public long FileLength { get; }

    /// <summary>The tensors in file order (by data offset).</summary>
    public IReadOnlyList<SafetensorsEntry> Entries { get; }

    /// <summary>The header's <c>__metadata__</c> (string to string); empty when it has none.</summary>
    public IReadOnlyDictionary<string, string> Metadata => _header.Metadata;

    /// <summary>
    /// Opens and maps <paramref name="path"/> and checks its header. Throws <see cref="InvalidDataException"/> when the
    /// file is shorter than 8 bytes; the header length runs past the file or above 100 MiB; the header is not UTF-8,
    /// not JSON, not an object, or its <c>__metadata__</c> is not an object of strings; a name or key appears twice; a
    /// tensor has an unknown dtype, a missing or unexpected key, a dimension that is not a non-negative integer, more
    /// than 64 dimensions, a size that overflows, offsets that run backwards or past the data, or a byte range whose
    /// length is not shape × dtype size; or the tensors overlap or leave bytes of the data region unindexed.
    /// </summary>
    public static SafetensorsReader Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors reading assumes a little-endian host");
        // A device or a pipe reports no length: refused before it is opened (opening a FIFO would block).
        if (File.Exists(path) && InputFiles.LengthOf(path) == 0)
            throw SafetensorsHeader.Bad(path, "the file is empty, or not a regular file (a device, pipe or socket)");
        var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0);
        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        bool acquired = false;
        try
        {
            long length = file.Length;
            if (length < 8)
                throw SafetensorsHeader.Bad(path, $"the file is {length} bytes long; a safetensors file begins with an 8-byte header length");
            map = MemoryMappedFile.CreateFromFile(file, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* start = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref start);
            acquired = true;
            start += view.PointerOffset;
            long headerLength = SafetensorsHeader.ReadHeaderLength(path, new ReadOnlySpan<byte>(start, 8), length);
            var header = SafetensorsHeader.Parse(path, new ReadOnlySpan<byte>(start + 8, (int)headerLength), length - 8 - headerLength);
            return new SafetensorsReader(path, length, map, view, start + header.DataStart, header);
        }
        catch
        {
            if (acquired) view!.SafeMemoryMappedViewHandle.ReleasePointer();
            view?.Dispose();
            map?.Dispose();
            file.Dispose();
            throw;
        }
    }

    /// <summary>The tensor called <paramref name="name"/>; throws <see cref="KeyNotFoundException"/> naming the file when there is none.</summary>
    public SafetensorsEntry this[string name] => TryGetEntry(name, out var entry)
        ? entry
        : throw new KeyNotFoundException($"{Path}: no tensor {SafetensorsHeader.Quote(name)} among its {Entries.Count}");

    /// <summary>The tensor called <paramref name="name"/>, if the file has one.</summary>
    public bool TryGetEntry(string name, [MaybeNullWhen(false)] out SafetensorsEntry entry)
    {
        ArgumentNullException.ThrowIfNull(name);
        return _header.ByName.TryGetValue(name, out entry);
    }

    /// <summary>
    /// The elements of an F32 tensor in place, without a copy, when its data is 4-byte aligned in the file (always
    /// for files from <see cref="SafetensorsWriter"/>). False for another dtype or a misaligned tensor: read those
    /// with <see cref="ReadFloat32(string, Span{float})"/>. The span is valid until <see cref="Dispose"/>.
    /// </summary>
    public bool TryGetFloat32Span(string name, out ReadOnlySpan<float> values)
    {
        return TryGetInPlace(Find(name), out values);
    }

    /// <summary>
    /// Reads an F32, F16 or BF16 tensor as float32 into <paramref name="destination"/>, which must hold exactly its
    /// elements. Conversions are exact. Throws <see cref="NotSupportedException"/> for another dtype.
    /// </summary>
    public void ReadFloat32(string name, Span<float> destination)
    {
        var entry = Find(name);
        RequireFloat(entry);
        CheckLength(entry, destination.Length, nameof(destination));
        CopyFloat32(entry, destination);
    }

    /// <summary>
    /// Reads elements [<paramref name="firstElement"/>, + destination's length) of an F32, F16 or BF16 tensor as
    /// float32 (row-major order), then lets the system drop the file pages just read from this process's resident memory
    /// (they stay in the page cache): a loader that streams a large checkpoint in pieces stays at the pieces' size.
    /// </summary>
    public void ReadFloat32(string name, long firstElement, Span<float> destination)
    {
        var entry = Find(name);
        RequireFloat(entry);
        if (firstElement < 0 || firstElement + destination.Length > entry.ElementCount)
            throw new ArgumentOutOfRangeException(nameof(firstElement), firstElement,
                $"firstElement: elements {firstElement}..{firstElement + destination.Length} lie outside {Describe(entry)}, which has {entry.ElementCount}");
        int size = entry.DType == SafetensorsDType.F32 ? 4 : 2;
        byte* source = Source(entry) + firstElement * size;
        switch (entry.DType)
        {
            case SafetensorsDType.F32: ElementConversion.Float32ToSingle(source, destination); break;
            case SafetensorsDType.F16: ElementConversion.Float16ToSingle(source, destination); break;
            default: ElementConversion.BFloat16ToSingle(source, destination); break;
        }
        DropPages(source, (long)destination.Length * size);
    }

    /// <summary>
    /// Reads bytes [<paramref name="firstByte"/>, + destination's length) of a tensor's data as they are in the file, any
    /// dtype (the packed blocks of a quantized checkpoint, its uint8 statistics), then drops the pages read as
    /// <see cref="ReadFloat32(string, long, Span{float})"/> does.
    /// </summary>
    public void ReadBytes(string name, long firstByte, Span<byte> destination)
    {
        var entry = Find(name);
        if (firstByte < 0 || firstByte + destination.Length > entry.ByteLength)
            throw new ArgumentOutOfRangeException(nameof(firstByte), firstByte,
                $"firstByte: bytes {firstByte}..{firstByte + destination.Length} lie outside {Describe(entry)}, which has {entry.ByteLength}");
        byte* source = Source(entry) + firstByte;
        new ReadOnlySpan<byte>(source, destination.Length).CopyTo(destination);
        DropPages(source, destination.Length);
    }

    /// <summary>madvise(MADV_DONTNEED) over the whole pages inside a read range of the read-only mapping (Linux; elsewhere nothing).</summary>
    private static void DropPages(byte* start, long bytes)
    {
        if (!OperatingSystem.IsLinux() || bytes <= 0) return;
        long page = Environment.SystemPageSize;
        long first = ((long)start + page - 1) / page * page, end = ((long)start + bytes) / page * page;
        if (end > first) _ = Madvise((nint)first, (nuint)(end - first), DontNeed);
    }

    private const int DontNeed = 4; // MADV_DONTNEED

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(nint address, nuint length, int advice);

    /// <summary>
    /// Reads an I32 or I64 tensor as int into <paramref name="destination"/>, which must hold exactly its elements. An
    /// I64 value outside the int range is an <see cref="InvalidDataException"/>. Throws
    /// <see cref="NotSupportedException"/> for another dtype.
    /// </summary>
    public void ReadInt32(string name, Span<int> destination)
    {
        var entry = Find(name);
        RequireInteger(entry);
        CheckLength(entry, destination.Length, nameof(destination));
        CopyInt32(entry, destination);
    }

    /// <summary>
    /// A new tensor on <paramref name="backend"/> holding the tensor called <paramref name="name"/>: F32, F16 and BF16
    /// become <see cref="DType.F32"/>, I32 and I64 become <see cref="DType.I32"/>. The shape must have rank ≤ 4 and
    /// int dimensions, else <see cref="NotSupportedException"/>.
    /// </summary>
    public Tensor Load(string name, Backend backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        var entry = Find(name);
        var (dtype, shape) = TensorTypeOf(entry);
        var tensor = backend.Allocate(dtype, shape);
        try
        {
            LoadCore(entry, tensor);
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
        return tensor;
    }

    /// <summary>
    /// Reads the tensor called <paramref name="name"/> into <paramref name="destination"/> (a reserved parameter, for
    /// instance), which must have its shape and the dtype <see cref="Load"/> would give.
    /// </summary>
    public void LoadInto(string name, Tensor destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        var entry = Find(name);
        var (dtype, shape) = TensorTypeOf(entry);
        if (destination.DType != dtype || destination.Shape != shape)
            throw new ArgumentException(
                $"{nameof(destination)}: expected a {dtype} tensor of shape {shape} for {Describe(entry)}; got {destination}", nameof(destination));
        LoadCore(entry, destination);
    }

    /// <summary>Unmaps the file. Spans from <see cref="TryGetFloat32Span"/> must not be used afterwards.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }

    private void LoadCore(SafetensorsEntry entry, Tensor destination)
    {
        if (destination.Length == 0) return;
        bool isFloat = entry.DType.IsFloat();
        if (destination.Backend.IsHostMemory)
        {
            if (isFloat) CopyFloat32(entry, destination.AsSpan());
            else CopyInt32(entry, destination.AsInt32Span());
            return;
        }
        if (TryGetInPlace(entry, out var inPlace))
        {
            destination.CopyFrom(inPlace);
            return;
        }
        // A device tensor is filled from host memory: decode into a pooled buffer, then upload it in one copy.
        int count = (int)entry.ElementCount;
        float[] staging = ArrayPool<float>.Shared.Rent(count);
        try
        {
            var values = staging.AsSpan(0, count);
            if (isFloat)
            {
                CopyFloat32(entry, values);
                destination.CopyFrom(values);
            }
            else
            {
                var ints = MemoryMarshal.Cast<float, int>(values);
                CopyInt32(entry, ints);
                destination.CopyFrom(ints);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(staging);
        }
    }

    private bool TryGetInPlace(SafetensorsEntry entry, out ReadOnlySpan<float> values)
    {
        values = default;
        byte* source = Source(entry);
        if (entry.DType != SafetensorsDType.F32 || entry.ElementCount > int.MaxValue || ((nint)source & 3) != 0) return false;
        values = new ReadOnlySpan<float>(source, (int)entry.ElementCount);
        return true;
    }

    private void CopyFloat32(SafetensorsEntry entry, Span<float> destination)
    {
        byte* source = Source(entry);
        switch (entry.DType)
        {
            case SafetensorsDType.F32: ElementConversion.Float32ToSingle(source, destination); break;
            case SafetensorsDType.F16: ElementConversion.Float16ToSingle(source, destination); break;
            default: ElementConversion.BFloat16ToSingle(source, destination); break;
        }
    }

    private void CopyInt32(SafetensorsEntry entry, Span<int> destination)
    {
        byte* source = Source(entry);
        if (entry.DType == SafetensorsDType.I32)
        {
            ElementConversion.Int32ToInt32(source, destination);
            return;
        }
        long bad = ElementConversion.Int64ToInt32(source, destination, out long value);
        if (bad >= 0)
        {
            throw SafetensorsHeader.Bad(Path, $"tensor {SafetensorsHeader.Quote(entry.Name)}: element {bad} of the I64 data is {value}, outside the int range it is read into");
        }
    }

    private (DType DType, Shape Shape) TensorTypeOf(SafetensorsEntry entry)
    {
        if (!entry.DType.IsFloat() && !entry.DType.IsInteger())
            throw new NotSupportedException($"{Describe(entry)}: {entry.DType.Name()} cannot be loaded into a tensor; F32, F16, BF16, I32 and I64 can");
        if (!entry.TryGetTensorShape(out var shape) || entry.ElementCount > int.MaxValue)
            throw new NotSupportedException(
                $"{Describe(entry)}: a tensor is loaded with at most {Shape.MaxRank} dimensions and {int.MaxValue} elements");
        return (entry.DType.IsFloat() ? DType.F32 : DType.I32, shape);
    }

    private SafetensorsEntry Find(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return this[name];
    }

    private byte* Source(SafetensorsEntry entry) => _data + entry.DataBegin;

    private void RequireFloat(SafetensorsEntry entry)
    {
        if (!entry.DType.IsFloat())
            throw new NotSupportedException($"{Describe(entry)}: {entry.DType.Name()} is not read as float32; F32, F16 and BF16 are");
    }

    private void RequireInteger(SafetensorsEntry entry)
    {
        if (!entry.DType.IsInteger())
            throw new NotSupportedException($"{Describe(entry)}: {entry.DType.Name()} is not read as int; I32 and I64 are");
    }

    private void CheckLength(SafetensorsEntry entry, int length, string argument)
    {
        if (length != entry.ElementCount)
            throw new ArgumentException($"{argument}: expected {entry.ElementCount} elements for {Describe(entry)}; got {length}", argument);
    }

    private string Describe(SafetensorsEntry entry) =>
        $"{Path}: tensor {SafetensorsHeader.Quote(entry.Name)} ({entry.DType.Name()} [{string.Join(", ", entry.Shape)}])";
}

using LoraRuntime.Cpu;
using Xunit;

namespace LoraRuntime.Tests.Serving;

/// <summary>Backend.CopyRows: strided rows land where they should, nothing else is touched, and bad extents are refused.</summary>
public sealed class CopyRowsTests : IDisposable
{
    private readonly CpuBackend _cpu = new();

    public void Dispose() => _cpu.Dispose();

    [Theory]
    [InlineData(1, 1, 1, 1)]
    [InlineData(3, 5, 7, 9)]
    [InlineData(4, 16, 48, 16)]
    public void Copies_strided_rows_and_leaves_the_gaps(int rows, int columns, int sourceStride, int destinationStride)
    {
        var source = Support.Reference.Random(2 + rows * sourceStride, 3);
        using var s = _cpu.FromArray(source, source.Length);
        using var d = _cpu.Zeros(3 + rows * destinationStride);
        _cpu.CopyRows(d, 3, destinationStride, s, 2, sourceStride, rows, columns);
        var expected = new float[d.Length];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < columns; j++)
                expected[3 + i * destinationStride + j] = source[2 + i * sourceStride + j];
        Assert.Equal(expected, d.ToArray());
    }

    [Fact]
    public void Bad_extents_strides_and_overlap_are_refused()
    {
        using var a = _cpu.Zeros(20);
        using var b = _cpu.Zeros(20);
        using var ids = _cpu.Allocate(DType.I32, new Shape(20));
        Assert.Contains("need 22 elements", Assert.Throws<ArgumentException>(() => _cpu.CopyRows(a, 0, 10, b, 0, 10, 3, 2)).Message);
        Assert.Contains("stride must be ≥ columns", Assert.Throws<ArgumentOutOfRangeException>(() => _cpu.CopyRows(a, 0, 2, b, 0, 4, 2, 3)).Message);
        Assert.Contains("share memory", Assert.Throws<ArgumentException>(() => _cpu.CopyRows(a, 2, 4, a, 0, 4, 3, 4)).Message);
        Assert.Throws<ArgumentException>(() => _cpu.CopyRows(ids, 0, 4, a, 0, 4, 2, 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => _cpu.CopyRows(a, -1, 4, b, 0, 4, 2, 4));
    }
}

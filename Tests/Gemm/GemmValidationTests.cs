using LoraRuntime.Cpu;
using Xunit;

namespace LoraRuntime.Tests.Gemm;

/// <summary>Bad GEMM input is refused with an ArgumentException naming the argument and the shapes, and nothing is written.</summary>
public sealed class GemmValidationTests
{
    private static readonly CpuBackend s_cpu = new();

    private static void AssertRefused(Action call, Tensor c, string paramFragment, params string[] messageFragments)
    {
        var before = c.ToArray();
        var e = Assert.ThrowsAny<ArgumentException>(call);
        Assert.Contains(paramFragment, e.ParamName ?? "");
        foreach (var f in messageFragments) Assert.Contains(f, e.Message);
        Assert.Equal(before, c.ToArray());
    }

    [Fact]
    public void MismatchedInnerDimensionNamesBothShapes()
    {
        using var a = s_cpu.Zeros(4, 5);
        using var b = s_cpu.Zeros(6, 3);
        using var c = s_cpu.Zeros(4, 3);
        AssertRefused(() => s_cpu.MatMul(c, a, b), c, "b", "[4, 5]", "[6, 3]");
    }

    [Fact]
    public void WrongOutputShapeNamesItsShape()
    {
        using var a = s_cpu.Zeros(4, 5);
        using var b = s_cpu.Zeros(5, 3);
        using var c = s_cpu.Zeros(3, 4);
        AssertRefused(() => s_cpu.MatMul(c, a, b), c, "c", "4×3", "[3, 4]");
    }

    [Fact]
    public void NegativeSizesAreRefused()
    {
        using var t = s_cpu.Zeros(16);
        AssertRefused(() => s_cpu.Gemm(Transpose.No, Transpose.No, -1, 2, 2, 1, t, 0, 2, t, 0, 2, 0, t, 0, 2), t, "problem", "M=-1");
    }

    [Fact]
    public void LeadingDimensionTooSmallIsRefused()
    {
        using var a = s_cpu.Zeros(64);
        using var b = s_cpu.Zeros(64);
        using var c = s_cpu.Zeros(64);
        AssertRefused(() => s_cpu.Gemm(Transpose.No, Transpose.No, 4, 4, 4, 1, a, 0, 3, b, 0, 4, 0, c, 0, 4), c, "problem.A", "≥ 4", "got 3");
        AssertRefused(() => s_cpu.Gemm(Transpose.No, Transpose.Yes, 4, 5, 4, 1, a, 0, 4, b, 0, 4, 0, c, 0, 4), c, "problem.C", "≥ 5");
    }

    [Fact]
    public void BufferTooSmallNamesTheNeedAndTheTensor()
    {
        using var a = s_cpu.Zeros(4, 4);
        using var b = s_cpu.Zeros(4, 4);
        using var c = s_cpu.Zeros(4, 4);
        AssertRefused(() => s_cpu.Gemm(Transpose.No, Transpose.No, 4, 4, 4, 1, a, 1, 4, b, 0, 4, 0, c, 0, 4), c, "problem.A", "needs 17", "[4, 4]");
        AssertRefused(() => s_cpu.Gemm(Transpose.No, Transpose.No, 4, 4, 4, 1, a, 0, 4, b, 0, 4, 0, c, 0, 5), c, "problem.C", "needs 19");
    }

    [Fact]
    public void OutputAliasingAnInputIsRefused()
    {
        using var a = s_cpu.FromArray(new float[32], 32);
        using var c = s_cpu.Zeros(4, 4);
        using var view = a.View(8, new Shape(4, 4));
        AssertRefused(() => s_cpu.Gemm(Transpose.No, Transpose.No, 4, 4, 4, 1, a, 0, 4, c, 0, 4, 0, view, 0, 4), view, "problem", "must not share memory");
    }

    [Fact]
    public void OverlappingBatchesOfCAreRefused()
    {
        using var a = s_cpu.Zeros(4, 4);
        using var b = s_cpu.Zeros(4, 4);
        using var c = s_cpu.Zeros(64);
        var p = new GemmProblem(c, a, b, 4, 4, 4);
        AssertRefused(() => s_cpu.GemmStridedBatched(p, 0, 0, 8, 3), c, "problem", "overlap");
    }

    [Fact]
    public void GroupedRefusesCrossProblemAliasingBeforeComputingAnything()
    {
        using var a = s_cpu.FromArray(Support.Reference.Random(16, 1), 4, 4);
        using var b = s_cpu.FromArray(Support.Reference.Random(16, 2), 4, 4);
        using var c0 = s_cpu.Zeros(4, 4);
        GemmProblem[] problems = [new GemmProblem(c0, a, b, 4, 4, 4), new GemmProblem(a, c0, b, 4, 4, 4)];
        AssertRefused(() => s_cpu.GemmGrouped(problems), c0, "problems", "shares memory");
        Assert.All(a.ToArray(), v => Assert.NotEqual(0f, v)); // the second problem's C (= a) untouched too
    }

    [Fact]
    public void TensorFromAnotherBackendIsRefused()
    {
        using var other = new CpuBackend();
        using var a = other.Zeros(2, 2);
        using var b = s_cpu.Zeros(2, 2);
        using var c = s_cpu.Zeros(2, 2);
        AssertRefused(() => s_cpu.MatMul(c, a, b), c, "problem.A", "expected a tensor on cpu");
    }

    [Fact]
    public void DisposedTensorIsRefused()
    {
        var a = s_cpu.Zeros(2, 2);
        a.Dispose();
        using var b = s_cpu.Zeros(2, 2);
        using var c = s_cpu.Zeros(2, 2);
        Assert.Throws<ObjectDisposedException>(() => s_cpu.MatMul(c, a, b));
    }
}

using LoraRuntime.Cli;
using LoraRuntime.Cli.Bench;
using Xunit;

namespace LoraRuntime.Tests.Cli;

public sealed class BenchParsingTests
{
    [Fact]
    public void Shapes_parse_in_order_with_blanks_and_either_x()
    {
        var shapes = GemmShape.ParseList(" 1024x1024x1024, 512X16x4096,1x1x1 ", "--shapes");
        Assert.Equal([new GemmShape(1024, 1024, 1024), new GemmShape(512, 16, 4096), new GemmShape(1, 1, 1)], shapes);
        Assert.Equal("512x16x4096", shapes[1].ToString());
        Assert.Equal(2.0 * 512 * 16 * 4096, shapes[1].Flops);
    }

    [Fact]
    public void The_default_shapes_parse()
    {
        var shapes = GemmShape.ParseList(GemmShape.Defaults, "--shapes");
        Assert.Equal(6, shapes.Count);
        Assert.Contains(new GemmShape(1, 4096, 4096), shapes);
    }

    [Theory]
    [InlineData("12x", "12x")]
    [InlineData("0x5x5", "0x5x5")]
    [InlineData("-1x2x3", "-1x2x3")]
    [InlineData("5x-5x5", "5x-5x5")]
    [InlineData("axbxc", "axbxc")]
    [InlineData("1x2x3x4", "1x2x3x4")]
    [InlineData("1.5x2x3", "1.5x2x3")]
    [InlineData("8x8x8,16x16", "16x16")]
    [InlineData("99999999999x1x1", "99999999999x1x1")]
    [InlineData("100000x100000x1", "100000x100000x1")]
    public void Bad_shape_tokens_name_the_option_and_the_token(string text, string badToken)
    {
        var e = Assert.Throws<UsageException>(() => GemmShape.ParseList(text, "--shapes"));
        Assert.StartsWith("--shapes: ", e.Message);
        Assert.Contains($"'{badToken}'", e.Message);
    }

    [Theory]
    [InlineData("")]
    [InlineData("  ")]
    [InlineData("8x8x8,")]
    [InlineData(",8x8x8")]
    public void Empty_shape_lists_and_entries_are_rejected(string text)
    {
        var e = Assert.Throws<UsageException>(() => GemmShape.ParseList(text, "--shapes"));
        Assert.StartsWith("--shapes: ", e.Message);
    }

    [Theory]
    [InlineData("NN", Transpose.No, Transpose.No)]
    [InlineData("nt", Transpose.No, Transpose.Yes)]
    [InlineData("TN", Transpose.Yes, Transpose.No)]
    [InlineData(" TT ", Transpose.Yes, Transpose.Yes)]
    public void Trans_parses(string text, Transpose a, Transpose b)
    {
        var trans = GemmTrans.Parse(text, "--trans");
        Assert.Equal(new GemmTrans(a, b), trans);
        Assert.Equal(text.Trim().ToUpperInvariant(), trans.ToString());
    }

    [Theory]
    [InlineData("N")]
    [InlineData("NNN")]
    [InlineData("XY")]
    [InlineData(null)]
    public void Bad_trans_is_rejected(string? text)
    {
        var e = Assert.Throws<UsageException>(() => GemmTrans.Parse(text, "--trans"));
        Assert.StartsWith("--trans: expected NN, NT, TN or TT", e.Message);
    }

    [Theory]
    [InlineData("auto", null)]
    [InlineData("AUTO", null)]
    [InlineData("7", 7)]
    public void Reps_parse(string text, int? expected) => Assert.Equal(expected, BenchOptions.ParseReps(text));

    [Theory]
    [InlineData("0")]
    [InlineData("-3")]
    [InlineData("many")]
    [InlineData("")]
    public void Bad_reps_are_rejected(string text)
    {
        var e = Assert.Throws<UsageException>(() => BenchOptions.ParseReps(text));
        Assert.StartsWith("--reps: ", e.Message);
    }
}

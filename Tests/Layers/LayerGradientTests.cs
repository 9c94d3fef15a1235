using LoraRuntime.Layers;
using Xunit;

namespace LoraRuntime.Tests.Layers;

/// <summary>Every layer's forward against float64 and its backward against finite differences of the float64 reference.</summary>
public sealed class LayerGradientTests
{
    private const int Batch = 2, Time = 3, Channels = 8, Heads = 2;

    private static ReferenceModel Model(Dictionary<string, double[]> p) => new(p);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Linear_matches_the_reference(bool bias)
    {
        using var f = new LayerFixture();
        var linear = new Linear(f.Parameters, "fc", 6, 5, bias);
        f.Reserve(trained: true);
        GradientCheck.Run(f.Backend, [f.Parameters], (m, x) => m.Linear("fc", x, Batch * Time, 6, 5), Model,
            linear.Forward, linear.Backward, [Batch, Time, 6], [Batch, Time, 5], 10, $"Linear (bias {bias})");
    }

    [Fact]
    public void Frozen_linear_computes_the_input_gradient_and_writes_no_parameter()
    {
        using var f = new LayerFixture();
        var linear = new Linear(f.Parameters, "fc", 6, 5);
        f.Reserve(trained: false);
        var before = f.Parameters.Values.ToArray();
        GradientCheck.Run(f.Backend, [f.Parameters], (m, x) => m.Linear("fc", x, Batch * Time, 6, 5), Model,
            linear.Forward, linear.Backward, [Batch, Time, 6], [Batch, Time, 5], 11, "frozen Linear");
        Assert.Equal(before, f.Parameters.Values.ToArray());
        Assert.True(linear.IsFrozen);
    }

    [Fact]
    public void Backward_accumulates_into_gradients()
    {
        using var f = new LayerFixture();
        var linear = new Linear(f.Parameters, "fc", 4, 3);
        f.Reserve(trained: true);
        using var x = f.Backend.FromArray(Support.Reference.Random(2 * 3 * 4, 1), 2, 3, 4);
        using var dy = f.Backend.FromArray(Support.Reference.Random(2 * 3 * 3, 2), 2, 3, 3);
        using var dx = f.Backend.Zeros(2, 3, 4);
        using var y = f.Backend.Zeros(2, 3, 3);
        linear.Forward(y, x);
        linear.Backward(dx, dy, x);
        float[] once = f.Parameters.Gradients.ToArray(), dxOnce = dx.ToArray();
        linear.Backward(dx, dy, x);
        // Adding the same gradient again doubles it, up to the rounding of the second accumulation.
        Primitives.Expect.Close(f.Parameters.Gradients.ToArray(), once.Select(v => 2.0 * v).ToArray(), 1e-6, 1e-6, "parameter gradients");
        Primitives.Expect.Close(dx.ToArray(), dxOnce.Select(v => 2.0 * v).ToArray(), 1e-6, 1e-6, "input gradient");
    }

    [Fact]
    public void LayerNorm_matches_the_reference()
    {
        using var f = new LayerFixture();
        var norm = new LayerNorm(f.Parameters, f.Activations, "ln", Channels);
        f.Reserve(trained: true);
        GradientCheck.Run(f.Backend, [f.Parameters], (m, x) => m.LayerNorm("ln", x, Batch * Time, Channels), Model,
            norm.Forward, norm.Backward, [Batch, Time, Channels], [Batch, Time, Channels], 12, "LayerNorm");
    }

    [Fact]
    public void Gelu_matches_the_reference()
    {
        using var f = new LayerFixture();
        var gelu = new Gelu(f.Backend, Channels);
        f.Reserve(trained: true);
        GradientCheck.Run(f.Backend, [f.Parameters], (_, x) => x.Select(Primitives.Reference.Gelu).ToArray(), Model,
            gelu.Forward, gelu.Backward, [Batch, Time, Channels], [Batch, Time, Channels], 13, "Gelu");
    }

    [Fact]
    public void Embedding_matches_the_reference()
    {
        using var f = new LayerFixture();
        var embedding = new Embedding(f.Parameters, "wte", 7, Channels);
        f.Reserve(trained: true);
        int[] ids = [3, 0, 6, 3, 3, 1];
        using var idTensor = f.Backend.Allocate(DType.I32, new Shape(Batch, Time));
        idTensor.CopyFrom(ids);
        using var output = f.Backend.Zeros(Batch, Time, Channels);
        embedding.Forward(output, idTensor);
        var table = embedding.Table.Value.ToArray();
        Assert.Equal(ids.SelectMany(id => table.Skip(id * Channels).Take(Channels)), output.ToArray());
        var dy = Support.Reference.Random(Batch * Time * Channels, 3);
        using var dOutput = f.Backend.FromArray(dy, Batch, Time, Channels);
        embedding.Backward(dOutput, idTensor);
        var expected = Primitives.Reference.EmbeddingBackward(Support.Reference.ToDouble(dy), ids, 7, Channels);
        GradientCheck.AssertClose(embedding.Table.Gradient.ToArray(), expected, "Embedding gradient");
    }

    [Fact]
    public void Mlp_matches_the_reference()
    {
        using var f = new LayerFixture();
        var mlp = new Mlp(f.Parameters, f.Activations, "mlp", Channels);
        f.Reserve(trained: true);
        GradientCheck.Run(f.Backend, [f.Parameters], (m, x) => m.Mlp("mlp", x, Batch * Time, Channels), Model,
            mlp.Forward, (dx, dy, x) => mlp.Backward(dx, dy, x), [Batch, Time, Channels], [Batch, Time, Channels], 14, "Mlp");
    }

    [Theory]
    [InlineData(2, 3)]
    [InlineData(1, 5)] // the full reserved T
    public void CausalSelfAttention_matches_the_reference(int batch, int time)
    {
        using var f = new LayerFixture();
        var attention = new CausalSelfAttention(f.Parameters, f.Activations, "attn", Channels, Heads);
        f.Reserve(trained: true);
        GradientCheck.Run(f.Backend, [f.Parameters], (m, x) => m.Attention("attn", x, batch, time, Channels, Heads), Model,
            attention.Forward, (dx, dy, x) => attention.Backward(dx, dy, x), [batch, time, Channels], [batch, time, Channels], 15,
            $"CausalSelfAttention B = {batch}, T = {time}");
    }

    /// <summary>Heads of 16 (C = 32, NH = 2): the shape the CPU backend's fused causal attention takes (with AVX-512).</summary>
    [Fact]
    public void CausalSelfAttention_with_fused_heads_matches_the_reference()
    {
        const int channels = 32, heads = 2, batch = 2, time = 6;
        using var f = new LayerFixture(maxBatch: batch, maxTime: time);
        var attention = new CausalSelfAttention(f.Parameters, f.Activations, "attn", channels, heads);
        f.Reserve(trained: true);
        GradientCheck.Run(f.Backend, [f.Parameters], (m, x) => m.Attention("attn", x, batch, time, channels, heads), Model,
            attention.Forward, (dx, dy, x) => attention.Backward(dx, dy, x), [batch, time, channels], [batch, time, channels], 16,
            $"CausalSelfAttention C = {channels}, NH = {heads}, B = {batch}, T = {time}");
    }

    [Fact]
    public void TransformerBlock_matches_the_reference()
    {
        using var f = new LayerFixture();
        var block = new TransformerBlock(f.Parameters, f.Activations, "blocks.0", new GptConfig(1, 1, Heads, Channels));
        f.Reserve(trained: true);
        GradientCheck.Run(f.Backend, [f.Parameters], (m, x) => m.Block("blocks.0", x, Batch, Time, Channels, Heads), Model,
            block.Forward, block.Backward, [Batch, Time, Channels], [Batch, Time, Channels], 16, "TransformerBlock");
    }

    [Fact]
    public void Frozen_TransformerStack_back_propagates_to_its_input()
    {
        using var f = new LayerFixture();
        var stack = new TransformerStack(f.Parameters, f.Activations, new GptConfig(1, 2, Heads, Channels));
        f.Reserve(trained: false);
        GradientCheck.Run(f.Backend, [f.Parameters], (m, x) => m.Stack(2, x, Batch, Time, Channels, Heads), Model,
            stack.Forward, stack.Backward, [Batch, Time, Channels], [Batch, Time, Channels], 17, "frozen TransformerStack");
    }

    [Fact]
    public void Forward_is_the_same_at_a_smaller_batch_and_length()
    {
        // Views at a smaller (B, T) use the front of each reserved buffer; results must not depend on the last (B, T).
        using var f = new LayerFixture(maxBatch: 3, maxTime: 6);
        var block = new TransformerBlock(f.Parameters, f.Activations, "blocks.0", new GptConfig(1, 1, Heads, Channels));
        f.Reserve(trained: true);
        var model = new ReferenceModel(GradientCheck.Download(f.Parameters));
        foreach (var (batch, time) in new[] { (3, 6), (1, 2), (2, 6), (3, 1) })
        {
            var x = Support.Reference.Random(batch * time * Channels, batch * 10 + time);
            using var input = f.Backend.FromArray(x, batch, time, Channels);
            using var output = f.Backend.Zeros(batch, time, Channels);
            block.Forward(output, input);
            var expected = model.Block("blocks.0", Support.Reference.ToDouble(x), batch, time, Channels, Heads);
            Assert.True(Support.Reference.RelativeError(output.ToArray(), expected) <= GradientCheck.ForwardTolerance, $"B = {batch}, T = {time}");
        }
    }
}

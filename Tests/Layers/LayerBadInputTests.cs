using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using Xunit;

namespace LoraRuntime.Tests.Layers;

/// <summary>Bad input to the layers: errors name the argument and say what was expected and what was given.</summary>
public sealed class LayerBadInputTests
{
    private static ArgumentException Rejects(string parameter, Action call, params string[] mentions)
    {
        var error = Assert.ThrowsAny<ArgumentException>(call);
        Assert.Equal(parameter, error.ParamName);
        foreach (var text in mentions) Assert.Contains(text, error.Message);
        return error;
    }

    [Fact]
    public void Wrong_widths_and_shapes_name_the_tensor()
    {
        using var f = new LayerFixture();
        var linear = new Linear(f.Parameters, "fc", 12, 10);
        var norm = new LayerNorm(f.Parameters, f.Activations, "ln", 12);
        f.Reserve(trained: true);
        using var x = f.Backend.Zeros(2, 3, 12);
        using var wide = f.Backend.Zeros(2, 3, 13);
        using var flat = f.Backend.Zeros(6, 12);
        using var y = f.Backend.Zeros(2, 3, 10);
        Rejects("input", () => linear.Forward(y, wide), "C = 12", "[2, 3, 13]");
        Rejects("input", () => linear.Forward(y, flat), "[B, T, C = 12]", "[6, 12]");
        Rejects("output", () => linear.Forward(x, x), "[2, 3, 10]", "[2, 3, 12]");
        Rejects("dOutput", () => linear.Backward(x, x, x), "[2, 3, 10]");
        Rejects("dInput", () => linear.Backward(y, y, x), "[2, 3, 12]");
        Rejects("input", () => norm.Forward(x, wide), "C = 12");
    }

    [Fact]
    public void Batch_or_length_beyond_the_reservation_is_refused()
    {
        using var f = new LayerFixture(maxBatch: 2, maxTime: 5);
        var block = new TransformerBlock(f.Parameters, f.Activations, "blocks.0", new GptConfig(1, 1, 2, 8));
        f.Reserve(trained: true);
        using var longer = f.Backend.Zeros(1, 7, 8);
        using var larger = f.Backend.Zeros(3, 5, 8);
        Rejects("input", () => block.Forward(f.Backend.Zeros(1, 7, 8), longer), "T = 7", "1..5", "[1, 7, 8]");
        Rejects("input", () => block.Forward(f.Backend.Zeros(3, 5, 8), larger), "B = 3", "1..2");
        var error = Assert.Throws<ArgumentException>(() => new CausalSelfAttention(f.Parameters, f.Activations, "x", 8, 3));
        Assert.Equal("heads", error.ParamName);
    }

    [Fact]
    public void Lora_refuses_bad_ranks_an_unfrozen_base_and_long_inputs()
    {
        using var f = new LayerFixture(maxTime: 4);
        var linear = new Linear(f.Parameters, "fc", 12, 10);
        f.Reserve(trained: false);
        var lora = new LoraLinear(linear);
        Rejects("rank", () => lora.AddAdapter("a", new LoraOptions { Rank = 0 }, 1, 4), "R = 0", "fc");
        Rejects("rank", () => lora.AddAdapter("a", new LoraOptions { Rank = 11 }, 1, 4), "R = 11", "min(12, 10)");
        Rejects("dropout", () => lora.AddAdapter("a", new LoraOptions { Dropout = 1f }, 1, 4));
        Rejects("alpha", () => lora.AddAdapter("a", new LoraOptions { Alpha = float.NaN }, 1, 4));
        using var adapter = lora.AddAdapter("a", new LoraOptions { Rank = 2 }, 1, 4);
        Rejects("name", () => lora.AddAdapter("a", new LoraOptions { Rank = 2 }, 1, 4), "already");
        using var x = f.Backend.Zeros(1, 5, 12);
        using var y = f.Backend.Zeros(1, 5, 10);
        Rejects("input", () => lora.Forward(y, x), "T = 5", "1..4");
        Rejects("outputOffset", () => new LoraLinear(linear, "fc.tail", 8, 4), "[8, 12)");
        Rejects("path", () => new LoraLinear(linear), "already");

        using var g = new LayerFixture();
        var trained = new Linear(g.Parameters, "proj", 4, 4);
        g.Reserve(trained: true);
        Rejects("targets", () => new LoraLinear(trained).AddAdapter("a", new LoraOptions { Rank = 2 }, 1, 1), "frozen");
    }

    [Fact]
    public void Reservations_enforce_their_order_and_inference_refuses_backward()
    {
        using var f = new LayerFixture(training: false);
        var mlp = new Mlp(f.Parameters, f.Activations, "mlp", 4);
        f.Reserve(trained: false);
        Assert.Throws<InvalidOperationException>(() => f.Parameters.Add("late", 3));
        Assert.Throws<InvalidOperationException>(() => mlp.Fc.Weight.Gradient);
        using var x = f.Backend.Zeros(1, 2, 4);
        using var y = f.Backend.Zeros(1, 2, 4);
        mlp.Forward(y, x);
        var error = Assert.Throws<InvalidOperationException>(() => mlp.Backward(x, y, x));
        Assert.Contains("training", error.Message);
        Rejects("name", () => new ParameterSet(f.Backend).Add("w", 2).Owner.Add("w", 3), "'w'");
    }
}

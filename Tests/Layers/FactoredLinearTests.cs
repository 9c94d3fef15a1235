using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using Xunit;

namespace LoraRuntime.Tests.Layers;

/// <summary>A factored Linear (W ≈ U·V, a compressed layer): forward against float64, backward against finite differences.</summary>
public sealed class FactoredLinearTests
{
    private const int Batch = 2, Time = 3, In = 6, Out = 5, Rank = 2;

    /// <summary>The reference sees the dense weight U·V, computed in float64 from the set's values.</summary>
    private static ReferenceModel Dense(Dictionary<string, double[]> p)
    {
        double[] u = p["fc.weight_u"], v = p["fc.weight_v"];
        var w = new double[Out * In];
        for (int o = 0; o < Out; o++)
            for (int c = 0; c < In; c++)
                for (int k = 0; k < Rank; k++) w[o * In + c] += u[o * Rank + k] * v[k * In + c];
        return new ReferenceModel(new Dictionary<string, double[]>(p) { ["fc.weight"] = w });
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Factored_linear_matches_the_reference_and_its_gradients(bool trained)
    {
        using var f = new LayerFixture();
        var parameters = f.Own(new ParameterSet(f.Backend) { FactoredRanks = new Dictionary<string, int> { ["fc"] = Rank } });
        var linear = new Linear(parameters, "fc", In, Out, activations: f.Activations);
        Assert.True(linear.IsFactored);
        Assert.Equal(Rank, linear.FactoredRank);
        Assert.Equal(["fc.weight_u", "fc.weight_v", "fc.bias"], parameters.Parameters.Select(p => p.Name));
        parameters.Reserve(withGradients: trained);
        f.Activations.Reserve();
        GradientCheck.Randomize(parameters, 7);
        var before = parameters.Values.ToArray();
        GradientCheck.Run(f.Backend, [parameters], (m, x) => m.Linear("fc", x, Batch * Time, In, Out), Dense,
            linear.Forward, linear.Backward, [Batch, Time, In], [Batch, Time, Out], 12, $"factored Linear (trained {trained})");
        if (!trained) Assert.Equal(before, parameters.Values.ToArray());
        var e = Assert.Throws<InvalidOperationException>(() => linear.Weight);
        Assert.Contains("factored", e.Message);
    }

    [Fact]
    public void A_stack_with_factored_layers_and_a_lora_adapter_on_one_allocates_nothing_per_step()
    {
        using var f = new LayerFixture(maxBatch: 2, maxTime: 16);
        var parameters = f.Own(new ParameterSet(f.Backend)
        {
            FactoredRanks = new Dictionary<string, int> { ["blocks.0.mlp.fc"] = 8, ["blocks.0.attn.o"] = 4 },
        });
        var stack = new TransformerStack(parameters, f.Activations, new GptConfig(1, 1, 2, 32));
        parameters.Reserve(withGradients: false);
        f.Activations.Reserve();
        GradientCheck.Randomize(parameters, 3, 0.1f);
        var lora = f.Own(new LoraModel(stack));
        var adapter = lora.AddAdapter("default", new LoraConfig { Defaults = new LoraOptions { Rank = 2 }, TargetModules = ["fc", "q"] });
        using var x = f.Backend.FromArray(Support.Reference.Random(2 * 16 * 32, 1), 2, 16, 32);
        using var y = f.Backend.Zeros(2, 16, 32);
        using var dy = f.Backend.FromArray(Support.Reference.Random(2 * 16 * 32, 2), 2, 16, 32);
        using var dx = f.Backend.Zeros(2, 16, 32);
        void Step()
        {
            adapter.ZeroGradients();
            stack.Forward(y, x);
            stack.Backward(dx, dy, x);
        }
        for (int i = 0; i < 3; i++) Step();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 5; i++) Step();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        // A merge needs the dense weight a factored layer does not have.
        var e = Assert.Throws<InvalidOperationException>(() => lora.Merge());
        Assert.Contains("nothing was merged", e.Message);
        Assert.All(lora.Modules.Values, m => Assert.False(m.IsMerged));
    }

    [Fact]
    public void A_rank_above_min_or_missing_activations_is_refused()
    {
        using var f = new LayerFixture();
        var parameters = f.Own(new ParameterSet(f.Backend) { FactoredRanks = new Dictionary<string, int> { ["fc"] = 6 } });
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new Linear(parameters, "fc", In, Out, activations: f.Activations));
        Assert.Contains("1..5", e.Message);
        var other = f.Own(new ParameterSet(f.Backend) { FactoredRanks = new Dictionary<string, int> { ["fc"] = 2 } });
        Assert.Throws<ArgumentException>(() => new Linear(other, "fc", In, Out));
    }
}

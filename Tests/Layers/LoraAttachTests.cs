using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using Xunit;
using Reference = LoraRuntime.Tests.Support.Reference;

namespace LoraRuntime.Tests.Layers;

/// <summary>Attaching adapters to a transformer stack by target names, with rank and α patterns, and training them.</summary>
public sealed class LoraAttachTests
{
    private const int Layers = 2, Batch = 2, Time = 3, Channels = 8, Heads = 2;

    private static (LayerFixture F, TransformerStack Stack, LoraModel Lora) FrozenStack()
    {
        var f = new LayerFixture();
        var stack = new TransformerStack(f.Parameters, f.Activations, new GptConfig(1, Layers, Heads, Channels));
        f.Reserve(trained: false);
        return (f, stack, f.Own(new LoraModel(stack)));
    }

    [Fact]
    public void Targets_q_and_v_adapt_slices_of_every_block_and_train_through_the_stack()
    {
        var (f, stack, lora) = FrozenStack();
        using var _ = f;
        var config = new LoraConfig { Defaults = new LoraOptions { Rank = 2, Alpha = 4, Init = LoraInit.Random }, TargetModules = ["q", "v"] };
        var adapter = lora.AddAdapter("default", config);
        Assert.Equal(["blocks.0.attn.q", "blocks.0.attn.v", "blocks.1.attn.q", "blocks.1.attn.v"], lora.Modules.Keys.Order());
        Assert.Equal(Channels, lora.Modules["blocks.1.attn.v"].OutputOffset / 2);
        GradientCheck.Run(f.Backend, [f.Parameters, adapter.Parameters], (m, x) => m.Stack(Layers, x, Batch, Time, Channels, Heads),
            p => LoraReference.With(p, lora.Modules.Values), stack.Forward, stack.Backward, [Batch, Time, Channels], [Batch, Time, Channels], 40,
            "stack with LoRA on q and v");
    }

    [Fact]
    public void Without_an_input_gradient_the_first_block_still_trains_every_adapter()
    {
        // Frozen embeddings below the stack need no input gradient: Backward(null, …) skips the first block's input
        // product and LayerNorm, and every adapter — blocks.0.attn.qkv's, right at the skipped product, included —
        // still gets its gradient.
        var (f, stack, lora) = FrozenStack();
        using var _ = f;
        var config = new LoraConfig { Defaults = new LoraOptions { Rank = 2, Alpha = 4, Init = LoraInit.Random }, TargetModules = [LoraConfig.AllLinear] };
        var adapter = lora.AddAdapter("default", config);
        GradientCheck.Run(f.Backend, [f.Parameters, adapter.Parameters], (m, x) => m.Stack(Layers, x, Batch, Time, Channels, Heads),
            p => LoraReference.With(p, lora.Modules.Values), stack.Forward, (_, dOutput, input) => stack.Backward(null, dOutput, input),
            [Batch, Time, Channels], [Batch, Time, Channels], 41, "stack with LoRA, no input gradient", checkInput: false);
    }

    [Fact]
    public void Without_an_input_gradient_a_folded_first_block_still_trains_every_adapter()
    {
        // Enough rows (4 × 8) for every layer to fold its adapter into the weight: the first block then runs its
        // adapters' dA products grouped with no dInput product at all.
        const int batch = 4, time = 8;
        var f = new LayerFixture(maxBatch: batch, maxTime: time);
        var stack = new TransformerStack(f.Parameters, f.Activations, new GptConfig(1, Layers, Heads, Channels));
        f.Reserve(trained: false);
        using var _ = f;
        var lora = f.Own(new LoraModel(stack));
        var config = new LoraConfig { Defaults = new LoraOptions { Rank = 2, Alpha = 4, Init = LoraInit.Random }, TargetModules = [LoraConfig.AllLinear] };
        var adapter = lora.AddAdapter("default", config);
        GradientCheck.Run(f.Backend, [f.Parameters, adapter.Parameters], (m, x) => m.Stack(Layers, x, batch, time, Channels, Heads),
            p => LoraReference.With(p, lora.Modules.Values), stack.Forward, (_, dOutput, input) => stack.Backward(null, dOutput, input),
            [batch, time, Channels], [batch, time, Channels], 43, "folded stack with LoRA, no input gradient", checkInput: false);
        Assert.All(lora.Modules.Values, m => Assert.True(m.Base.LastForwardFolded, $"{m.Path} did not fold"));
    }

    [Fact]
    public void A_trained_first_LayerNorm_refuses_to_skip_the_input_gradient()
    {
        var f = new LayerFixture();
        var block = new TransformerBlock(f.Parameters, f.Activations, "blocks.0", new GptConfig(1, 1, Heads, Channels));
        f.Reserve(trained: true);
        using var _ = f;
        using var x = f.Backend.FromArray(Reference.Random(Batch * Time * Channels, 3), Batch, Time, Channels);
        using var y = f.Backend.Zeros(Batch, Time, Channels);
        block.Forward(y, x);
        var e = Assert.Throws<ArgumentNullException>(() => block.Backward(null, y, x));
        Assert.Equal("dInput", e.ParamName);
        Assert.Contains("ln1", e.Message);
    }

    [Fact]
    public void All_linear_targets_whole_projections_and_patterns_override_rank_and_alpha()
    {
        var (f, _, lora) = FrozenStack();
        using var _f = f;
        var config = new LoraConfig
        {
            Defaults = new LoraOptions { Rank = 4, Alpha = 8 },
            TargetModules = [LoraConfig.AllLinear],
            RankPattern = new Dictionary<string, int> { ["blocks.1.attn.qkv"] = 2, ["fc"] = 3 },
            AlphaPattern = new Dictionary<string, float> { [@"blocks\.0\..*"] = 32 },
        };
        var adapter = lora.AddAdapter("default", config);
        string[] expected = [.. Enumerable.Range(0, Layers).SelectMany(l => new[] { "attn.qkv", "attn.o", "mlp.fc", "mlp.proj" }.Select(n => $"blocks.{l}.{n}"))];
        Assert.Equal(expected.Order(), lora.Modules.Keys.Order());
        var byPath = adapter.Modules.ToDictionary(w => w.Module.Path);
        Assert.Equal(2, byPath["blocks.1.attn.qkv"].Rank);
        Assert.Equal(4, byPath["blocks.0.attn.qkv"].Rank);
        Assert.Equal(3, byPath["blocks.0.mlp.fc"].Rank);
        Assert.Equal(4, byPath["blocks.1.mlp.proj"].Rank);
        Assert.Equal(32f / 4, byPath["blocks.0.attn.o"].Scale);
        Assert.Equal(8f / 2, byPath["blocks.1.attn.qkv"].Scale);
        // Parameter names follow PEFT's: {path}.lora_A.weight, {path}.lora_B.weight.
        Assert.True(adapter.Parameters.TryGet("blocks.0.mlp.fc.lora_A.weight", out var a) && a.Shape == new Shape(3, Channels));
    }

    [Fact]
    public void Bad_targets_and_ranks_are_reported_before_anything_changes()
    {
        var (f, _, lora) = FrozenStack();
        using var _ = f;
        LoraAdapter Add(LoraConfig config) => lora.AddAdapter("default", config);
        var error = Assert.Throws<ArgumentException>(() => Add(new LoraConfig { TargetModules = ["q", "query"] }));
        Assert.Equal("TargetModules", error.ParamName);
        Assert.Contains("'query'", error.Message);
        Assert.Contains("q, k, v", error.Message);
        error = Assert.Throws<ArgumentException>(() => Add(new LoraConfig { TargetModules = [] }));
        Assert.Equal("TargetModules", error.ParamName);
        error = Assert.Throws<ArgumentException>(() => Add(new LoraConfig { TargetModules = ["qkv", "q"] }));
        Assert.Contains("overlap", error.Message);
        var rankError = Assert.ThrowsAny<ArgumentException>(() => Add(new LoraConfig { TargetModules = ["o"], Defaults = new LoraOptions { Rank = 0 } }));
        Assert.Equal("rank", rankError.ParamName);
        Assert.Contains("R = 0", rankError.Message);
        rankError = Assert.ThrowsAny<ArgumentException>(() => Add(new LoraConfig
        {
            TargetModules = ["fc"], RankPattern = new Dictionary<string, int> { ["blocks.1.mlp.fc"] = 9 },
        }));
        Assert.Equal("rank", rankError.ParamName);
        Assert.Contains("blocks.1.mlp.fc", rankError.Message);
        Assert.Contains("min(8, 32)", rankError.Message);
        error = Assert.Throws<ArgumentException>(() => Add(new LoraConfig { TargetModules = ["o"], RankPattern = new Dictionary<string, int> { ["(o"] = 2 } }));
        Assert.Equal("RankPattern", error.ParamName);
        Assert.Empty(lora.Modules);
        Assert.Empty(lora.Adapters);
    }

    [Fact]
    public void Training_steps_update_the_adapter_and_leave_the_frozen_base_bit_for_bit()
    {
        var (f, stack, lora) = FrozenStack();
        using var _ = f;
        var adapter = lora.AddAdapter("default", new LoraConfig
        {
            Defaults = new LoraOptions { Rank = 2, Alpha = 4, Dropout = 0.1f }, TargetModules = [LoraConfig.AllLinear],
        });
        var dora = lora.AddAdapter("dora", new LoraConfig { Defaults = new LoraOptions { Rank = 2, UseDora = true }, TargetModules = ["fc"] });
        var baseBefore = f.Parameters.Values.ToArray();
        foreach (var (active, steps) in new[] { (adapter, 3), (dora, 2) })
        {
            lora.SetActiveAdapter(active.Name);
            var before = active.Parameters.Values.ToArray();
            using var m = f.Backend.Zeros((int)active.Parameters.Values.Length);
            using var v = f.Backend.Zeros((int)active.Parameters.Values.Length);
            using var x = f.Backend.FromArray(Reference.Random(Batch * Time * Channels, 1), Batch, Time, Channels);
            using var y = f.Backend.Zeros(Batch, Time, Channels);
            using var dy = f.Backend.FromArray(Reference.Random(Batch * Time * Channels, 2), Batch, Time, Channels);
            using var dx = f.Backend.Zeros(Batch, Time, Channels);
            for (int step = 1; step <= steps; step++)
            {
                active.ZeroGradients();
                stack.Forward(y, x);
                stack.Backward(dx, dy, x);
                f.Backend.AdamWStep(active.Parameters.Values, active.Parameters.Gradients, m, v, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, step);
            }
            Assert.NotEqual(before, active.Parameters.Values.ToArray());
            Assert.All(active.Parameters.Values.ToArray(), value => Assert.True(float.IsFinite(value)));
        }
        Assert.Equal(baseBefore, f.Parameters.Values.ToArray());
    }

    [Fact]
    public void Model_wide_merge_disable_and_unmerge()
    {
        var (f, stack, lora) = FrozenStack();
        using var _ = f;
        lora.AddAdapter("default", new LoraConfig { Defaults = new LoraOptions { Rank = 2, Init = LoraInit.Random }, TargetModules = ["q", "o", "fc"] });
        var weights = f.Parameters.Values.ToArray();
        using var x = f.Backend.FromArray(Reference.Random(Batch * Time * Channels, 3), Batch, Time, Channels);
        using var y = f.Backend.Zeros(Batch, Time, Channels);
        float[] Run()
        {
            stack.Forward(y, x);
            return y.ToArray();
        }
        var adapted = Run();
        lora.DisableAdapters();
        var baseOutput = Run();
        Assert.NotEqual(adapted, baseOutput);
        lora.EnableAdapters();
        lora.Merge(safe: true);
        Assert.True(lora.Modules.Values.All(m => m.IsMerged));
        Assert.True(Reference.RelativeError(Run(), Reference.ToDouble(adapted)) <= 1e-5, "merged");
        lora.DisableAdapters(); // unmerges, as PEFT does
        Assert.DoesNotContain(lora.Modules.Values, m => m.IsMerged);
        Assert.True(Reference.RelativeError(f.Parameters.Values.ToArray(), Reference.ToDouble(weights)) <= 1e-6, "W after unmerge");
        Assert.True(Reference.RelativeError(Run(), Reference.ToDouble(baseOutput)) <= 1e-6, "base after unmerge");
    }
}

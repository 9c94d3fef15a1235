using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using Xunit;

namespace LoraRuntime.Tests.Layers;

/// <summary>Once reserved and warm, forward and backward passes allocate no managed memory.</summary>
public sealed class LayerAllocationTests
{
    private static long Allocated(Action pass)
    {
        for (int i = 0; i < 3; i++) pass();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 5; i++) pass();
        long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
        if (bytes == 0) return 0;
        // A one-time lazy initialisation outside the layers (the worker pool's wait handle) may land in the first window.
        before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 5; i++) pass();
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    [Fact]
    public void Stack_with_lora_dropout_and_dora_allocates_nothing_per_step()
    {
        using var f = new LayerFixture(maxBatch: 2, maxTime: 40);
        var stack = new TransformerStack(f.Parameters, f.Activations, new GptConfig(1, 2, 4, 64));
        f.Reserve(trained: false, scale: 0.1f);
        var lora = f.Own(new LoraModel(stack));
        var adapter = lora.AddAdapter("default", new LoraConfig
        {
            Defaults = new LoraOptions { Rank = 4, Alpha = 8, Dropout = 0.1f }, TargetModules = ["q", "v", "o", "proj"],
        });
        var dora = lora.AddAdapter("dora", new LoraConfig { Defaults = new LoraOptions { Rank = 4, UseDora = true }, TargetModules = ["fc"] });
        using var x = f.Backend.FromArray(Support.Reference.Random(2 * 40 * 64, 1), 2, 40, 64);
        using var y = f.Backend.Zeros(2, 40, 64);
        using var dy = f.Backend.FromArray(Support.Reference.Random(2 * 40 * 64, 2), 2, 40, 64);
        using var dx = f.Backend.Zeros(2, 40, 64);
        using var m = f.Backend.Zeros((int)adapter.Parameters.Values.Length);
        using var v = f.Backend.Zeros((int)adapter.Parameters.Values.Length);
        int step = 0;
        void Step()
        {
            adapter.ZeroGradients();
            dora.ZeroGradients();
            stack.Forward(y, x);
            stack.Backward(dx, dy, x);
            f.Backend.AdamWStep(adapter.Parameters.Values, adapter.Parameters.Gradients, m, v, 1e-3f, 0.9f, 0.999f, 1e-8f, 0f, ++step);
        }
        Assert.Equal(0, Allocated(Step));
        // A shorter sequence builds new views once; after that it is steady again.
        using var shortX = f.Backend.FromArray(Support.Reference.Random(2 * 17 * 64, 3), 2, 17, 64);
        using var shortY = f.Backend.Zeros(2, 17, 64);
        Assert.Equal(0, Allocated(() => stack.Forward(shortY, shortX)));
    }

    [Fact]
    public void Lora_linear_allocates_nothing_per_pass()
    {
        using var f = new LayerFixture(maxBatch: 1, maxTime: 64);
        var linear = new Linear(f.Parameters, "fc", 256, 256);
        f.Reserve(trained: false);
        var lora = new LoraLinear(linear);
        f.Own(lora.AddAdapter("default", new LoraOptions { Rank = 16, Alpha = 32 }, 1, 64));
        using var x = f.Backend.FromArray(Support.Reference.Random(64 * 256, 1), 1, 64, 256);
        using var y = f.Backend.Zeros(1, 64, 256);
        using var dx = f.Backend.Zeros(1, 64, 256);
        Assert.Equal(0, Allocated(() =>
        {
            lora.Forward(y, x);
            lora.Backward(dx, y, x);
        }));
    }

    [Fact]
    public void Low_rank_attention_allocates_nothing_per_pass()
    {
        using var f = new LayerFixture(maxBatch: 2, maxTime: 48);
        var attention = new LowRankAttention(f.Parameters, f.Activations, "attn", 32, 4, new LowRankAttentionOptions { ProjectedLength = 8 });
        f.Reserve(trained: true, scale: 0.2f);
        using var x = f.Backend.FromArray(Support.Reference.Random(2 * 48 * 32, 1), 2, 48, 32);
        using var y = f.Backend.Zeros(2, 48, 32);
        using var dx = f.Backend.Zeros(2, 48, 32);
        Assert.Equal(0, Allocated(() =>
        {
            attention.Forward(y, x);
            attention.Backward(dx, y, x);
        }));
    }
}

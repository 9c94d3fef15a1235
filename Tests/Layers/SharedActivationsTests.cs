using LoraRuntime.Cpu;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Layers.Training;
using Xunit;

namespace LoraRuntime.Tests.Layers;

/// <summary>
/// The memory a training step holds: a block's backward-pass gradients and its branch outputs are one set for all
/// blocks, the logits' gradient takes the logits' memory, and so a QLoRA step over a SmolLM2-135M-shaped NF4 base holds
/// at most 0.4× what the float32 LoRA step holds.
/// </summary>
public sealed class SharedActivationsTests : IDisposable
{
    private readonly CpuBackend _backend = new();

    public void Dispose() => _backend.Dispose();

    [Fact]
    public void Layers_declaring_one_role_share_one_region_and_a_larger_size_takes_another()
    {
        using var training = new Activations(_backend, 2, 8, training: true);
        var a = training.AddSharedGradient("g", (b, t) => new Shape(b, t, 4));
        var b = training.AddSharedGradient("g", (b, t) => new Shape(b, t, 4));
        var smaller = training.AddSharedGradient("g", (b, t) => new Shape(b, t, 2));
        var larger = training.AddSharedGradient("g", (b, t) => new Shape(b, t, 8));
        var scratch = training.AddSharedScratch("g", (b, t) => new Shape(b, t, 4)); // another kind: another region
        var own = training.AddGradient("own", (b, t) => new Shape(b, t, 4));
        Assert.Equal((64 + 128 + 64 + 64) * sizeof(float), training.Bytes);
        training.Reserve();
        Assert.Equal(a.Region, b.Region);
        Assert.Equal(a.Region, smaller.Region);
        Assert.NotEqual(a.Region, larger.Region);
        Assert.NotEqual(a.Region, scratch.Region);
        Assert.Equal(a.For(2, 8).Pointer, b.For(2, 8).Pointer);
        Assert.NotEqual(a.For(2, 8).Pointer, own.For(2, 8).Pointer);

        // An inference set holds no gradients and takes a shared scratch once, at its first use, for every layer.
        using var inference = new Activations(_backend, 2, 8, training: false);
        var first = inference.AddSharedScratch("s", (b, t) => new Shape(b, t, 4));
        var second = inference.AddSharedScratch("s", (b, t) => new Shape(b, t, 4));
        inference.AddSharedGradient("g", (b, t) => new Shape(b, t, 4));
        Assert.Equal(64 * sizeof(float), inference.Bytes);
        inference.Reserve();
        Assert.Equal(first.For(1, 8).Pointer, second.For(2, 4).Pointer);
    }

    [Fact]
    public void After_a_backward_pass_the_logits_buffer_holds_their_gradient_and_reading_logits_is_refused()
    {
        var config = new GptConfig(16, 2, 2, 8, 8);
        using var model = new GptModel(_backend, config, 1);
        model.Initialize(3);
        using var ids = _backend.Allocate(DType.I32, new Shape(1, 8));
        ids.CopyFrom(Enumerable.Range(0, 8).ToArray());
        model.Forward(ids, ids);
        float[] logits = model.Logits.ToArray();
        model.Backward();
        Assert.Contains("forward pass", Assert.Throws<InvalidOperationException>(() => model.Logits).Message);
        model.Forward(ids, ids);
        Assert.Equal(logits, model.Logits.ToArray());
    }

    [Fact]
    public void A_qlora_step_on_the_smollm2_135m_shape_holds_at_most_four_tenths_of_the_float32_lora_step()
    {
        var config = LoraRuntime.Cli.Bench.LatencyModel.Parse("smollm2-135m", 128).Config;
        long f32 = StepBytes(config, WeightStorage.Float32), nf4 = StepBytes(config, WeightStorage.Quantized(WeightFormat.NF4));
        double fraction = nf4 / (double)f32;
        Assert.True(fraction <= 0.4, $"QLoRA holds {nf4 / 1048576.0:N0} MiB, {fraction:0.000}× the float32 step's {f32 / 1048576.0:N0} MiB");
    }

    /// <summary>What <c>lora bench finetune</c> reports: the pool's bytes in use after a step, B 1 × T 128, r 16 on q, k, v, o.</summary>
    private static long StepBytes(GptConfig config, WeightStorage storage)
    {
        using var backend = new CpuBackend();
        using var model = new GptModel(backend, config, 1, training: true, trainParameters: false, storage.FormatsFor(_ => WeightFormat.F32));
        model.Initialize(7, scaleResidual: true);
        using var lora = new LoraModel(model);
        var adapter = lora.AddAdapter("a", new LoraConfig
        {
            TargetModules = ["q", "k", "v", "o"], Defaults = new LoraOptions { Rank = 16, Alpha = 32, Init = LoraInit.Random, Seed = 5 },
        });
        using var optimizer = new AdamW(adapter.Parameters);
        using var ids = backend.Allocate(DType.I32, new Shape(1, 128));
        ids.CopyFrom(Enumerable.Range(0, 128).Select(i => i * 37 % config.Vocabulary).ToArray());
        adapter.ZeroGradients();
        Assert.True(float.IsFinite(model.Forward(ids, ids)));
        model.Backward();
        optimizer.Update(1e-4f);
        return backend.Pool.Stats.BytesInUse;
    }
}

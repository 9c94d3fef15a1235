using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using Xunit;
using Reference = LoraRuntime.Tests.Support.Reference;

namespace LoraRuntime.Tests.Layers;

/// <summary>DoRA as PEFT defines it: magnitude m, detached row norms n = ‖W + s·BA‖, y = b + (m/n) ⊙ (x Wᵀ + s·x Aᵀ Bᵀ).</summary>
public sealed class DoraTests
{
    private const int Batch = 2, Time = 3, In = 9, Out = 7;

    private static (LayerFixture F, Linear Base, LoraLinear Lora) Frozen()
    {
        var f = new LayerFixture();
        var linear = new Linear(f.Parameters, "fc", In, Out);
        f.Reserve(trained: false);
        return (f, linear, new LoraLinear(linear));
    }

    [Fact]
    public void At_init_the_magnitude_is_the_weight_norm_and_the_output_is_the_base()
    {
        var (f, linear, lora) = Frozen();
        using var _ = f;
        using var input = f.Backend.FromArray(Reference.Random(Batch * Time * In, 1), Batch, Time, In);
        using var output = f.Backend.Zeros(Batch, Time, Out);
        linear.Forward(output, input);
        var baseOutput = output.ToArray();
        var adapter = f.Own(lora.AddAdapter("dora", new LoraOptions { Rank = 3, Alpha = 6, UseDora = true }, 2, 5));
        var w = Reference.ToDouble(linear.Weight.Value.ToArray());
        var norms = Enumerable.Range(0, Out).Select(o => Math.Sqrt(w.Skip(o * In).Take(In).Sum(v => v * v))).ToArray();
        Primitives.Expect.Close(adapter.Modules[0].Magnitude!.Value.ToArray(), norms, 2e-6, 0, "m = ‖W‖ per row");
        linear.Forward(output, input);
        Assert.Equal(baseOutput, output.ToArray());
    }

    [Fact]
    public void Forward_and_backward_match_the_reference_with_detached_norms()
    {
        var (f, _, lora) = Frozen();
        using var _f = f;
        var adapter = f.Own(lora.AddAdapter("dora", new LoraOptions { Rank = 3, Alpha = 6, UseDora = true, Init = LoraInit.Random }, 2, 5));
        // Move m away from the norms so that the magnitude term matters.
        var m = adapter.Modules[0].Magnitude!;
        m.Value.CopyFrom(m.Value.ToArray().Select((v, i) => v * (0.7f + 0.1f * i)).ToArray());
        var described = LoraReference.Describe(adapter.Modules[0]);
        GradientCheck.Run(f.Backend, [f.Parameters, adapter.Parameters], (model, x) => model.Linear("fc", x, Batch * Time, In, Out),
            p => new ReferenceModel(p) { Adapters = { ["fc"] = [described] } }, lora.Forward, lora.Backward, [Batch, Time, In], [Batch, Time, Out], 30, "DoRA");
    }

    [Fact]
    public void Merge_folds_the_magnitude_into_W_and_unmerge_restores_it()
    {
        var (f, linear, lora) = Frozen();
        using var _ = f;
        var adapter = f.Own(lora.AddAdapter("dora", new LoraOptions { Rank = 3, Alpha = 6, UseDora = true, Init = LoraInit.Random }, 2, 5));
        var weights = adapter.Modules[0];
        var m = weights.Magnitude!;
        m.Value.CopyFrom(m.Value.ToArray().Select((v, i) => v * (1.2f - 0.05f * i)).ToArray());
        var w = linear.Weight.Value.ToArray();
        using var input = f.Backend.FromArray(Reference.Random(Batch * Time * In, 2), Batch, Time, In);
        using var output = f.Backend.Zeros(Batch, Time, Out);
        linear.Forward(output, input);
        var unmerged = output.ToArray();

        lora.Merge();
        var direction = LoraReference.Merged(weights, Reference.ToDouble(w));
        var mv = m.Value.ToArray();
        var expected = direction.Select((v, i) =>
        {
            int o = i / In;
            double norm = Math.Sqrt(direction.Skip(o * In).Take(In).Sum(d => d * d));
            return mv[o] / norm * v;
        }).ToArray();
        Assert.True(Reference.RelativeError(linear.Weight.Value.ToArray(), expected) <= 1e-6, "merged W");
        linear.Forward(output, input);
        Assert.True(Reference.RelativeError(output.ToArray(), Reference.ToDouble(unmerged)) <= 1e-6, "merged forward");

        lora.Unmerge();
        Assert.True(Reference.RelativeError(linear.Weight.Value.ToArray(), Reference.ToDouble(w)) <= 1e-6, "unmerged W");
    }

    [Fact]
    public void DoRA_on_slices_of_a_fused_projection_matches_the_reference_and_merges_into_its_rows()
    {
        // q and v of a fused qkv [12, 4] (Llama's q_proj, v_proj), each with its own magnitude; k untouched.
        using var f = new LayerFixture();
        var qkv = new Linear(f.Parameters, "attn.qkv", In, 12);
        f.Reserve(trained: false);
        LoraLinear q = new(qkv, "attn.q", 0, 4), v = new(qkv, "attn.v", 8, 4);
        var adapter = f.Own(LoraAdapter.Create("dora",
            [(q, new LoraOptions { Rank = 2, Alpha = 4, UseDora = true, Init = LoraInit.Random, Seed = 1 }),
             (v, new LoraOptions { Rank = 3, Alpha = 3, UseDora = true, Init = LoraInit.Random, Seed = 2 })], 2, 5));
        foreach (var w in adapter.Modules)
            w.Magnitude!.Value.CopyFrom(w.Magnitude.Value.ToArray().Select((x, i) => x * (0.8f + 0.1f * i)).ToArray());
        GradientCheck.Run(f.Backend, [f.Parameters, adapter.Parameters], (model, x) => model.Linear("attn.qkv", x, Batch * Time, In, 12),
            p => LoraReference.With(p, [q, v]), qkv.Forward, qkv.Backward, [Batch, Time, In], [Batch, Time, 12], 31, "DoRA on q and v slices");

        using var input = f.Backend.FromArray(Reference.Random(Batch * Time * In, 3), Batch, Time, In);
        using var output = f.Backend.Zeros(Batch, Time, 12);
        qkv.Forward(output, input);
        var unmerged = output.ToArray();
        var w0 = qkv.Weight.Value.ToArray();
        q.Merge();
        v.Merge();
        qkv.Forward(output, input);
        Assert.True(Reference.RelativeError(output.ToArray(), Reference.ToDouble(unmerged)) <= 1e-6, "merged forward");
        Assert.Equal(w0.AsSpan(4 * In, 4 * In).ToArray(), qkv.Weight.Value.ToArray().AsSpan(4 * In, 4 * In).ToArray()); // k's rows untouched
        v.Unmerge();
        q.Unmerge();
        Assert.True(Reference.RelativeError(qkv.Weight.Value.ToArray(), Reference.ToDouble(w0)) <= 1e-6, "unmerged W");
    }

    [Fact]
    public void DoRA_is_refused_with_dropout()
    {
        using var f = new LayerFixture();
        var qkv = new Linear(f.Parameters, "attn.qkv", 4, 12);
        f.Reserve(trained: false);
        var whole = new LoraLinear(qkv, "attn.qkv.whole");
        var error = Assert.Throws<ArgumentException>(() => whole.AddAdapter("d", new LoraOptions { Rank = 2, UseDora = true, Dropout = 0.1f }, 1, 1));
        Assert.Equal("useDora", error.ParamName);
        Assert.Empty(whole.Adapters);
    }
}

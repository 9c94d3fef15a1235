using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using Xunit;
using Reference = LoraRuntime.Tests.Support.Reference;

namespace LoraRuntime.Tests.Layers;

/// <summary>LoraLinear against PEFT's definitions: initialisations, forward and backward, slices, merging, several adapters.</summary>
public sealed class LoraLinearTests
{
    private const int Batch = 2, Time = 3, In = 12, Out = 10;

    /// <summary>A frozen Linear [Out, In] with random weights and one LoRA module on it.</summary>
    private static (LayerFixture F, Linear Base, LoraLinear Lora) Frozen(int inFeatures = In, int outFeatures = Out, int maxTime = 5)
    {
        var f = new LayerFixture(maxTime: maxTime);
        var linear = new Linear(f.Parameters, "fc", inFeatures, outFeatures);
        f.Reserve(trained: false);
        return (f, linear, new LoraLinear(linear));
    }

    private static float[] Run(LayerFixture f, Linear linear, float[] x, int batch = Batch, int time = Time)
    {
        using var input = f.Backend.FromArray(x, batch, time, linear.InFeatures);
        using var output = f.Backend.Zeros(batch, time, linear.OutFeatures);
        linear.Forward(output, input);
        return output.ToArray();
    }

    [Theory]
    [InlineData(nameof(LoraInit.Default))]
    [InlineData(nameof(LoraInit.Gaussian))]
    public void With_B_zero_at_init_the_output_equals_the_base_exactly(string initName)
    {
        var init = Enum.Parse<LoraInit>(initName); // a theory's parameters are public; LoraInit is internal
        var (f, linear, lora) = Frozen();
        using var _ = f;
        var x = Reference.Random(Batch * Time * In, 1);
        var baseOutput = Run(f, linear, x);
        using var adapter = f.Own(lora.AddAdapter("default", new LoraOptions { Rank = 4, Alpha = 16, Init = init }, 2, 5));
        Assert.All(adapter.Modules[0].B.Value.ToArray(), v => Assert.Equal(0f, v));
        Assert.Equal(baseOutput, Run(f, linear, x));
    }

    [Fact]
    public void Default_init_is_torch_kaiming_uniform_with_a_sqrt5()
    {
        var (f, _, lora) = Frozen(inFeatures: 256, outFeatures: 64);
        using var _f = f;
        var adapter = f.Own(lora.AddAdapter("default", new LoraOptions { Rank = 16, Seed = 5 }, 1, 1));
        var a = adapter.Modules[0].A.Value.ToArray();
        double bound = 1 / Math.Sqrt(256); // gain √(2/(1 + 5)) · √3 / √fan_in
        Assert.All(a, v => Assert.InRange(Math.Abs(v), 0, bound));
        Assert.InRange(a.Max(v => Math.Abs(v)), 0.99 * bound, bound);
        Assert.InRange(a.Average(v => (double)v), -0.05 * bound, 0.05 * bound);
        Assert.InRange(a.Average(v => (double)v * v), 0.95 * bound * bound / 3, 1.05 * bound * bound / 3);
        // The same seed gives the same A; another seed another.
        var same = f.Own(LoraAdapter.Create("same", [(lora, new LoraOptions { Rank = 16, Seed = 5 })], 1, 1));
        var other = f.Own(LoraAdapter.Create("other", [(lora, new LoraOptions { Rank = 16, Seed = 6 })], 1, 1));
        Assert.Equal(a, same.Modules[0].A.Value.ToArray());
        Assert.NotEqual(a, other.Modules[0].A.Value.ToArray());
    }

    [Fact]
    public void Gaussian_init_has_std_one_over_rank_and_random_init_fills_B()
    {
        var (f, _, lora) = Frozen(inFeatures: 512, outFeatures: 64);
        using var _f = f;
        var gaussian = f.Own(lora.AddAdapter("g", new LoraOptions { Rank = 8, Init = LoraInit.Gaussian }, 1, 1));
        var a = gaussian.Modules[0].A.Value.ToArray();
        double mean = a.Average(v => (double)v), std = Math.Sqrt(a.Average(v => (v - mean) * (v - mean)));
        Assert.InRange(std, 0.95 / 8, 1.05 / 8);
        Assert.InRange(mean, -0.1 / 8, 0.1 / 8);
        var random = f.Own(LoraAdapter.Create("r", [(lora, new LoraOptions { Rank = 8, Init = LoraInit.Random })], 1, 1));
        var b = random.Modules[0].B.Value.ToArray();
        Assert.All(b, v => Assert.InRange(Math.Abs(v), 0, 1 / Math.Sqrt(8)));
        Assert.InRange(b.Max(v => Math.Abs(v)), 0.9 / Math.Sqrt(8), 1 / Math.Sqrt(8));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Forward_and_backward_match_the_reference(bool rsLora)
    {
        var (f, linear, lora) = Frozen();
        using var _ = f;
        var options = new LoraOptions { Rank = 3, Alpha = 6, UseRsLora = rsLora, Init = LoraInit.Random };
        var adapter = f.Own(lora.AddAdapter("default", options, 2, 5));
        Assert.Equal(rsLora ? 6 / MathF.Sqrt(3) : 2f, adapter.Modules[0].Scale);
        GradientCheck.Run(f.Backend, [f.Parameters, adapter.Parameters], (m, x) => m.Linear("fc", x, Batch * Time, In, Out),
            p => LoraReference.With(p, [lora]), lora.Forward, lora.Backward, [Batch, Time, In], [Batch, Time, Out], 20, $"LoRA (rsLoRA {rsLora})");
    }

    /// <summary>
    /// Enough rows for the base layer to fold the delta into its effective weight W + s·BA (10 rows of a 4 → 6 layer):
    /// the same forward and gradients as the reference, and as the unfolded pass over fewer rows.
    /// </summary>
    [Fact]
    public void A_folded_pass_matches_the_reference_and_the_unfolded_pass()
    {
        const int inFeatures = 4, outFeatures = 6, batch = 2, time = 5;
        var (f, linear, lora) = Frozen(inFeatures, outFeatures, maxTime: time);
        using var _ = f;
        var adapter = f.Own(lora.AddAdapter("default", new LoraOptions { Rank = 2, Alpha = 3, Init = LoraInit.Random }, batch, time));
        var x = Reference.Random(batch * time * inFeatures, 4);
        var folded = Run(f, linear, x, batch, time);
        Assert.True(linear.LastForwardFolded);
        // One row at a time is too few to pay for the copy: unfolded, and equal to the folded rows to round-off.
        for (int r = 0; r < batch * time; r++)
        {
            var row = Run(f, linear, x.AsSpan(r * inFeatures, inFeatures).ToArray(), 1, 1);
            Assert.False(linear.LastForwardFolded);
            for (int j = 0; j < outFeatures; j++) Assert.Equal(row[j], folded[r * outFeatures + j], 1e-5f);
        }
        GradientCheck.Run(f.Backend, [f.Parameters, adapter.Parameters], (m, xs) => m.Linear("fc", xs, batch * time, inFeatures, outFeatures),
            p => LoraReference.With(p, [lora]), lora.Forward, lora.Backward, [batch, time, inFeatures], [batch, time, outFeatures], 22, "LoRA folded");
        Assert.True(linear.LastForwardFolded);
    }

    [Fact]
    public void Slices_of_a_fused_projection_add_into_their_columns_only()
    {
        const int c = 4;
        using var f = new LayerFixture();
        var qkv = new Linear(f.Parameters, "attn.qkv", c, 3 * c);
        f.Reserve(trained: false);
        var x = Reference.Random(Batch * Time * c, 2);
        var baseOutput = Run(f, qkv, x);
        var q = new LoraLinear(qkv, "attn.q", 0, c);
        var v = new LoraLinear(qkv, "attn.v", 2 * c, c);
        var options = new LoraOptions { Rank = 2, Alpha = 3, Init = LoraInit.Random };
        var adapter = f.Own(LoraAdapter.Create("default", [(q, options), (v, options with { Seed = 9 })], 2, 5));
        var output = Run(f, qkv, x);
        for (int i = 0; i < output.Length; i++)
            if (i % (3 * c) is >= c and < 2 * c) Assert.Equal(baseOutput[i], output[i]); // k is not adapted
        GradientCheck.Run(f.Backend, [f.Parameters, adapter.Parameters], (m, xs) => m.Linear("attn.qkv", xs, Batch * Time, c, 3 * c),
            p => LoraReference.With(p, [q, v]), qkv.Forward, qkv.Backward, [Batch, Time, c], [Batch, Time, 3 * c], 21, "LoRA on q and v slices");
    }

    [Fact]
    public void Dropout_applies_while_training_with_a_reproducible_mask()
    {
        var (f, linear, lora) = Frozen();
        using var _ = f;
        var adapter = f.Own(lora.AddAdapter("default", new LoraOptions { Rank = 3, Alpha = 3, Dropout = 0.3f, Init = LoraInit.Random }, 2, 5));
        GradientCheck.Run(f.Backend, [f.Parameters, adapter.Parameters], (m, x) => m.Linear("fc", x, Batch * Time, In, Out),
            p => LoraReference.With(p, [lora], withDropout: true), lora.Forward, lora.Backward, [Batch, Time, In], [Batch, Time, Out], 22,
            "LoRA with dropout");
        // Each training pass draws a new mask; evaluation applies none.
        var x = Reference.Random(Batch * Time * In, 3);
        var first = Run(f, linear, x);
        Assert.NotEqual(first, Run(f, linear, x));
        adapter.Training = false;
        var model = LoraReference.With(GradientCheck.Download(f.Parameters, adapter.Parameters), [lora]);
        Assert.True(Reference.RelativeError(Run(f, linear, x), model.Linear("fc", Reference.ToDouble(x), Batch * Time, In, Out)) <= 2e-6);
    }

    [Fact]
    public void Merge_then_unmerge_matches_the_direct_computation_and_restores_W()
    {
        const int c = 16;
        using var f = new LayerFixture();
        var qkv = new Linear(f.Parameters, "attn.qkv", c, 3 * c);
        f.Reserve(trained: false);
        var k = new LoraLinear(qkv, "attn.k", c, c);
        var adapter = f.Own(LoraAdapter.Create("default", [(k, new LoraOptions { Rank = 4, Alpha = 8, Init = LoraInit.Random })], 2, 5));
        float[] w = qkv.Weight.Value.ToArray(), x = Reference.Random(Batch * Time * c, 4);
        var unmerged = Run(f, qkv, x);

        k.Merge();
        Assert.True(k.IsMerged && adapter.Modules[0].IsMerged);
        var expected = LoraReference.Merged(adapter.Modules[0], Reference.ToDouble(w));
        Assert.True(Reference.RelativeError(qkv.Weight.Value.ToArray(), expected) <= 1e-7);
        Assert.True(Reference.RelativeError(Run(f, qkv, x), Reference.ToDouble(unmerged)) <= 1e-6, "merged forward");
        k.Merge(); // merging again does nothing

        k.Unmerge();
        Assert.False(k.IsMerged);
        Assert.True(Reference.RelativeError(qkv.Weight.Value.ToArray(), Reference.ToDouble(w)) <= 1e-6, "unmerged W");
        Assert.True(Reference.RelativeError(Run(f, qkv, x), Reference.ToDouble(unmerged)) <= 1e-6, "forward after unmerge");
    }

    [Fact]
    public void Safe_merge_refuses_a_non_finite_result_and_leaves_W_alone()
    {
        var (f, linear, lora) = Frozen();
        using var _ = f;
        var adapter = f.Own(lora.AddAdapter("default", new LoraOptions { Rank = 2, Init = LoraInit.Random }, 2, 5));
        var w = linear.Weight.Value.ToArray();
        var a = adapter.Modules[0].A.Value.ToArray();
        a[5] = float.PositiveInfinity;
        adapter.Modules[0].A.Value.CopyFrom(a);
        var error = Assert.Throws<InvalidOperationException>(() => lora.Merge(safe: true));
        Assert.Contains("non-finite", error.Message);
        Assert.Contains("'default'", error.Message);
        Assert.Equal(w, linear.Weight.Value.ToArray());
        Assert.False(lora.IsMerged);
        a[5] = 0.5f;
        adapter.Modules[0].A.Value.CopyFrom(a);
        lora.Merge(safe: true);
        Assert.True(Reference.RelativeError(linear.Weight.Value.ToArray(), LoraReference.Merged(adapter.Modules[0], Reference.ToDouble(w))) <= 1e-7);
    }

    [Fact]
    public void Several_adapters_one_active_and_disabling_gives_the_base()
    {
        var (f, linear, lora) = Frozen();
        using var _ = f;
        var x = Reference.Random(Batch * Time * In, 5);
        var baseOutput = Run(f, linear, x);
        var first = f.Own(lora.AddAdapter("first", new LoraOptions { Rank = 2, Alpha = 4, Init = LoraInit.Random, Seed = 1 }, 2, 5));
        var second = f.Own(lora.AddAdapter("second", new LoraOptions { Rank = 5, Alpha = 5, Init = LoraInit.Random, Seed = 2 }, 2, 5));
        Assert.Equal("first", lora.Active!.AdapterName);
        double[] Expected(LoraAdapter adapter)
        {
            var model = new ReferenceModel(GradientCheck.Download(f.Parameters, adapter.Parameters));
            model.Adapters["fc"] = [LoraReference.Describe(adapter.Modules[0])];
            return model.Linear("fc", Reference.ToDouble(x), Batch * Time, In, Out);
        }
        Assert.True(Reference.RelativeError(Run(f, linear, x), Expected(first)) <= 2e-6);
        lora.SetActiveAdapter("second");
        Assert.True(Reference.RelativeError(Run(f, linear, x), Expected(second)) <= 2e-6);
        lora.DisableAdapters();
        Assert.Equal(baseOutput, Run(f, linear, x));
        lora.EnableAdapters();
        Assert.True(Reference.RelativeError(Run(f, linear, x), Expected(second)) <= 2e-6);
        var error = Assert.Throws<ArgumentException>(() => lora.SetActiveAdapter("third"));
        Assert.Equal("name", error.ParamName);
        Assert.Contains("'first', 'second'", error.Message);
        // Removing an adapter detaches it.
        second.Dispose();
        Assert.Equal("first", lora.Active!.AdapterName);
    }
}

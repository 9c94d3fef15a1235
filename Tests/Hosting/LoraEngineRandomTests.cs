using LoraRuntime.Cpu;
using LoraRuntime.Hosting;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Tests.Gpt2;
using LoraRuntime.Tests.Serving;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Hosting;

/// <summary>
/// <see cref="LoraEngine.CreateRandom"/>: an engine over a model of a given shape with weights drawn from a seed —
/// the model a GptModel initialised from that seed is (with and without an adapter, in either layout), token ids only,
/// and bad input named before anything is reserved.
/// </summary>
public sealed class LoraEngineRandomTests : IDisposable
{
    private const double Tolerance = 1e-5;
    private const ulong Seed = 9;
    private static readonly EngineOptions Small = new() { Device = "cpu", MaxBatch = 2, MaxStepTokens = 8, MaxRank = 8, AdapterBudgetBytes = 1 << 20 };
    private readonly CpuBackend _cpu = new();

    public void Dispose() => _cpu.Dispose();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>‖a − b‖ / ‖b‖.</summary>
    private static double Error(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected) => Reference.RelativeError(actual, Reference.ToDouble(expected));

    /// <summary>The last position's logits of <paramref name="model"/> over <paramref name="tokens"/>.</summary>
    private float[] LastLogits(GptModel model, int[] tokens)
    {
        int v = model.Config.Vocabulary;
        using var ids = _cpu.Allocate(DType.I32, new Shape(1, tokens.Length));
        ids.CopyFrom(tokens);
        model.Forward(ids);
        return model.Logits.ToArray().AsSpan((tokens.Length - 1) * v, v).ToArray();
    }

    /// <summary>A model of <paramref name="config"/> initialised as CreateRandom documents: GPT-2's recipe from the seed.</summary>
    private GptModel Initialised(GptConfig config, ulong seed)
    {
        var model = new GptModel(_cpu, config, maxBatch: 1, training: false, trainParameters: false);
        model.Initialize(seed, scaleResidual: true);
        return model;
    }

    [Fact]
    public async Task A_random_engine_is_the_model_initialised_from_its_seed_and_serves_adapters_by_name()
    {
        using var f = new ServingFixture(); // its PEFT adapters fit any model of ServingFixture.Config
        var config = ServingFixture.Config;
        using var engine = LoraEngine.CreateRandom(config, Seed, Small);
        Assert.Equal(config, engine.Config);
        Assert.Equal(ModelLayout.LoraRuntime, engine.Layout);
        Assert.Equal("cpu", engine.Device);
        Assert.Equal(config.BlockSize, engine.MaxSequence);
        int[] tokens = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5];
        var logits = new float[engine.Vocabulary];
        using var model = Initialised(config, Seed);
        var expected = LastLogits(model, tokens);
        engine.Forward(tokens, logits);
        Assert.True(Error(logits, expected) <= Tolerance, $"base: {Error(logits, expected):E2}");

        engine.LoadAdapter("qv", f.AdapterDirectory("qv"));
        using (var lora = new LoraModel(model))
        {
            PeftAdapterFiles.Load(lora, "qv", f.AdapterDirectory("qv")).Training = false;
            var adapted = LastLogits(model, tokens);
            engine.Forward(tokens, logits, "qv");
            Assert.True(Error(logits, adapted) <= Tolerance, $"qv: {Error(logits, adapted):E2}");
            Assert.True(Error(adapted, expected) > 1e-3, "the adapter changes the logits");
        }

        // Greedy generation from token ids; no tokenizer, so no text.
        var result = await engine.GenerateAsync(tokens, new GenerationOptions { Adapter = "qv", MaxTokens = 4 }, Ct);
        Assert.Equal(4, result.Tokens.Length);
        Assert.Equal("", result.Text);
        Assert.All(result.Tokens, id => Assert.InRange(id, 0, config.Vocabulary - 1));

        // The seed decides the weights: the same seed again gives the same logits, another seed others.
        using (var same = LoraEngine.CreateRandom(config, Seed, Small))
        {
            var again = new float[same.Vocabulary];
            same.Forward(tokens, again);
            Assert.Equal(expected.Length, again.Length);
            engine.Forward(tokens, logits);
            Assert.Equal(logits, again);
        }
        using var other = LoraEngine.CreateRandom(config, Seed + 1, Small);
        var otherLogits = new float[other.Vocabulary];
        other.Forward(tokens, otherLogits);
        Assert.True(Error(otherLogits, expected) > 1e-2, "another seed, other weights");
    }

    [Fact]
    public async Task A_random_engine_has_no_tokenizer_and_says_so()
    {
        using var engine = LoraEngine.CreateRandom(ServingFixture.Config, Seed, Small);
        Assert.False(engine.HasTokenizer);
        Assert.Contains("no tokenizer", Assert.Throws<InvalidOperationException>(() => engine.Encode("abc")).Message);
        Assert.Throws<InvalidOperationException>(() => engine.Decode([1, 2]));
        Assert.Throws<InvalidOperationException>(() => engine.Forward("abc"));
        await Assert.ThrowsAsync<InvalidOperationException>(() => engine.GenerateAsync("abc", null, Ct));
        Assert.Equal("options", (await Assert.ThrowsAsync<ArgumentException>(() => engine.GenerateAsync([1, 2], new GenerationOptions { Stop = ["x"] }, Ct))).ParamName);
    }

    [Fact]
    public void A_random_gpt2_shaped_engine_with_gpt2_layout_takes_gpt2_peft_adapters()
    {
        using var f = new Gpt2ServedFixture();
        var config = new GptConfig(f.Tokenizer.VocabularySize, Gpt2Fixture.Layers, Gpt2Fixture.Heads, Gpt2Fixture.Channels, Gpt2Fixture.Positions);
        using var engine = LoraEngine.CreateRandom(config, Seed, Small, ModelLayout.Gpt2);
        Assert.Equal(ModelLayout.Gpt2, engine.Layout);
        var info = engine.LoadAdapter("a", f.AdapterDir);
        Assert.Equal(2 * Gpt2Fixture.Layers, info.Modules);
        int[] tokens = [104, 101, 257, 111];
        using var model = Initialised(config, Seed);
        var plain = LastLogits(model, tokens);
        using var lora = new LoraModel(model);
        PeftAdapterFiles.Load(lora, "a", f.AdapterDir, ModelLayout.Gpt2).Training = false;
        var adapted = LastLogits(model, tokens);
        Assert.True(Error(adapted, plain) > 1e-3, "the adapter changes the logits");
        var logits = new float[engine.Vocabulary];
        engine.Forward(tokens, logits, "a");
        Assert.True(Error(logits, adapted) <= Tolerance, $"adapter: {Error(logits, adapted):E2}");
        engine.Forward(tokens, logits, "a", 0f);
        Assert.True(Error(logits, plain) <= Tolerance, $"scale 0: {Error(logits, plain):E2}");

        // Our layout names modules "blocks.0.attn.qkv": GPT-2's names have no place in it.
        using var ours = LoraEngine.CreateRandom(config, Seed, Small);
        Assert.Throws<InvalidDataException>(() => ours.LoadAdapter("a", f.AdapterDir));
    }

    [Fact]
    public void Bad_input_to_create_random_is_an_argument_exception_naming_the_argument()
    {
        var config = ServingFixture.Config;
        Assert.Equal("config", Assert.Throws<ArgumentNullException>(() => LoraEngine.CreateRandom(null!, Seed)).ParamName);
        Assert.Equal("Channels", Assert.Throws<ArgumentException>(() => LoraEngine.CreateRandom(config with { Heads = 3 }, Seed, Small)).ParamName);
        Assert.Equal("Layers", Assert.Throws<ArgumentOutOfRangeException>(() => LoraEngine.CreateRandom(config with { Layers = 0 }, Seed, Small)).ParamName);
        var longer = Assert.Throws<ArgumentOutOfRangeException>(() => LoraEngine.CreateRandom(config, Seed, Small with { MaxSequence = config.BlockSize + 1 }));
        Assert.Equal("options", longer.ParamName);
        Assert.Contains("MaxSequence", longer.Message);
        Assert.Equal("options", Assert.Throws<ArgumentException>(() => LoraEngine.CreateRandom(config, Seed, Small with { Device = "tpu" })).ParamName);
        Assert.Equal("layout", Assert.Throws<ArgumentOutOfRangeException>(() => LoraEngine.CreateRandom(config, Seed, Small, (ModelLayout)7)).ParamName);
    }
}

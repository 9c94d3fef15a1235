using LoraRuntime.Hosting;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Text;
using LoraRuntime.Tests.Gpt2;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Hosting;

/// <summary>
/// The embedding API over a Hugging Face GPT-2 directory with its BPE tokenizer and a PEFT adapter in GPT-2's names:
/// the per-call scale against the float64 reference (PEFT's y += m·s·(x Aᵀ) Bᵀ), scale 0 against the base.
/// </summary>
public sealed class LoraEngineGpt2Tests : IDisposable
{
    private readonly Gpt2ServedFixture _f = new();

    public void Dispose() => _f.Dispose();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_per_call_scale_equals_the_float64_reference_and_scale_zero_the_base()
    {
        using var engine = LoraEngine.Load(_f.BaseDir, new EngineOptions { Device = "cpu", MaxBatch = 2, MaxStepTokens = 8, MaxRank = 4, AdapterBudgetBytes = 1 << 20 });
        Assert.Equal(ModelLayout.Gpt2, engine.Layout);
        Assert.IsType<BpeTokenizer>(engine.Tokenizer);
        Assert.Contains("requested cpu", engine.DeviceReason);
        var info = engine.LoadAdapter("a", _f.AdapterDir);
        Assert.Equal(2 * Gpt2Fixture.Layers, info.Modules);
        int[] ids = _f.Tokenizer.Encode("hello");
        Assert.Equal(ids, engine.Encode("hello"));
        Assert.Equal("hello", engine.Decode(ids));
        int v = engine.Vocabulary;
        var baseLogits = new float[v];
        engine.Forward(ids, baseLogits);
        Assert.True(Reference.RelativeError(baseLogits, _f.LastLogits(ids, null)) <= 1e-5);
        var logits = new float[v];
        engine.Forward(ids, logits, "a", 0f);
        Assert.Equal(baseLogits, logits);
        foreach (float scale in new[] { 1f, 0.5f, -1.5f, 2.5f })
        {
            engine.Forward(ids, logits, "a", scale);
            var expected = _f.LastLogits(ids, scale);
            double error = Reference.RelativeError(logits, expected);
            Assert.True(error <= 1e-5, $"scale {scale}: relative error {error:E2}");
            Assert.True(Reference.RelativeError(logits, _f.LastLogits(ids, null)) > 1e-3, $"scale {scale} changes the logits");
            // A generation at that scale starts with the reference's most likely token.
            var result = await engine.GenerateAsync("hello", new GenerationOptions { Adapter = "a", Scale = scale, MaxTokens = 1 }, Ct);
            Assert.Equal(Array.IndexOf(expected, expected.Max()), result.Tokens.Single());
            Assert.Equal(_f.Tokenizer.Decode(result.Tokens), result.Text);
        }
        var plain = await engine.GenerateAsync("hello", new GenerationOptions { MaxTokens = 3 }, Ct);
        var zero = await engine.GenerateAsync("hello", new GenerationOptions { Adapter = "a", Scale = 0, MaxTokens = 3 }, Ct);
        Assert.Equal(plain.Tokens, zero.Tokens);
    }
}

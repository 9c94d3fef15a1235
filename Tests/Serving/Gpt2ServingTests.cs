using System.Net;
using System.Text;
using System.Text.Json;
using LoraRuntime.Cli.Serve;
using LoraRuntime.Cpu;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Serving;
using LoraRuntime.Layers.Text;
using LoraRuntime.Tests.Gpt2;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Serving;

/// <summary>Serving a Hugging Face GPT-2 base: its BPE tokenizer, PEFT adapters in GPT-2's module names, and <c>lora serve</c> over it.</summary>
public sealed class Gpt2ServingTests : IDisposable
{
    private readonly CpuBackend _cpu = new();
    private readonly Gpt2ServedFixture _f = new();

    public void Dispose()
    {
        _f.Dispose();
        _cpu.Dispose();
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public void The_decoder_with_a_gpt2_peft_adapter_matches_the_float64_reference()
    {
        using var model = Gpt2Checkpoint.Load(_cpu, _f.BaseDir, maxBatch: 1);
        var layout = new ServingLayout(model, ModelLayout.Gpt2);
        using var bank = new AdapterBank(layout, 1 << 20, maxRank: 4);
        var loaded = bank.Load("a", _f.AdapterDir);
        Assert.Equal(2 * Gpt2Fixture.Layers, loaded.ModuleCount);
        using var decoder = new KvCacheDecoder(layout, slots: 2, maxStepTokens: 8, maxRank: 4);
        var adapter = bank.TryAcquire("a")!;
        int[] ids = _f.Tokenizer.Encode("hello");
        int v = _f.Tokenizer.VocabularySize;
        var logits = new float[2 * v];
        decoder.Forward([new DecodeRow(0, 0, ids.Length, adapter), new DecodeRow(1, 0, ids.Length, null)], [.. ids, .. ids], logits);
        var withAdapter = _f.LastLogits(ids, 1.0);
        var plain = _f.LastLogits(ids, null);
        Assert.True(Reference.RelativeError(logits.AsSpan(0, v), withAdapter) <= 1e-5);
        Assert.True(Reference.RelativeError(logits.AsSpan(v, v), plain) <= 1e-5);
        Assert.True(Reference.RelativeError(logits.AsSpan(0, v), plain) > 1e-2, "the adapter changes the logits");
        bank.Release(adapter);
    }

    [Fact]
    public async Task Lora_serve_completes_bpe_prompts_on_a_gpt2_checkpoint_with_its_adapter()
    {
        using var host = ServingHost.Open(_cpu, _f.BaseDir, [("a", _f.AdapterDir)], new ServeOptions(Slots: 2, MaxStepTokens: 8, MaxRank: 4, AdapterBudgetBytes: 1 << 20));
        Assert.IsType<BpeTokenizer>(host.Tokenizer);
        await using var app = ServeApi.Build(host, "http://127.0.0.1:0");
        await app.StartAsync(Ct);
        using var http = new HttpClient { BaseAddress = new Uri(app.Urls.Single()), Timeout = TimeSpan.FromSeconds(30) };
        using var content = new StringContent("""{"model": "a", "prompt": "hello", "max_tokens": 2, "temperature": 0}""", Encoding.UTF8, "application/json");
        using var response = await http.PostAsync("/v1/completions", content, Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement;
        string text = body.GetProperty("choices")[0].GetProperty("text").GetString()!;
        var direct = await host.Scheduler.SubmitAsync(new CompletionRequest { Adapter = "a", Prompt = _f.Tokenizer.Encode("hello"), MaxTokens = 2 }, Ct);
        Assert.Equal(_f.Tokenizer.Decode(direct.Tokens), text);
        // Greedy decoding's first token is the float64 reference's argmax with the adapter.
        var expected = _f.LastLogits(_f.Tokenizer.Encode("hello"), 1.0);
        Assert.Equal(Array.IndexOf(expected, expected.Max()), direct.Tokens[0]);
        Assert.Equal(3, body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        await app.StopAsync(Ct);
    }
}

using System.Text;
using LoraRuntime.Cpu;
using LoraRuntime.Hosting;
using LoraRuntime.Layers.Serving;
using LoraRuntime.Tests.Serving;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Xunit;
using ChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace LoraRuntime.Tests.Hosting;

/// <summary>
/// The engine embedded as Microsoft.Extensions.AI's <see cref="IChatClient"/>, registered with one
/// <c>AddLoraRuntime(...)</c> call and used through the abstractions only: the prompt is the chat template's rendering,
/// streaming gives the whole answer piece by piece, <see cref="ChatOptions.ModelId"/> picks the adapter (and its own
/// template), <c>AdditionalProperties["scale"]</c> its scale.
/// </summary>
public sealed class LoraChatClientTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "lora-chatclient-" + Guid.NewGuid().ToString("N"));
    private readonly ChatModel.Files _files;
    private readonly ServiceProvider _services;

    public LoraChatClientTests()
    {
        using (var backend = new CpuBackend()) _files = ChatModel.Write(backend, _root);
        _services = new ServiceCollection()
            .AddLoraRuntime(_files.Model, new EngineOptions { Device = "cpu", MaxBatch = 4, MaxSequence = 160 },
                new Dictionary<string, string> { ["tuned"] = _files.Adapter, ["templated"] = _files.Templated })
            .BuildServiceProvider();
    }

    public void Dispose()
    {
        _services.Dispose();
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly ChatMessage[] Conversation =
    [
        new(ChatRole.System, "You answer in one word."), new(ChatRole.User, "Hello there"), new(ChatRole.Assistant, "Hi!"), new(ChatRole.User, "And now?"),
    ];

    [Fact]
    public async Task A_chat_client_from_the_container_answers_whole_and_streamed_alike()
    {
        var client = _services.GetRequiredService<IChatClient>();
        var engine = Assert.IsType<LoraEngine>(client.GetService(typeof(LoraEngine)));
        Assert.Equal("lora-runtime", client.GetService<ChatClientMetadata>()!.ProviderName);
        var options = new ChatOptions { ModelId = "tuned", Temperature = 0.8f, Seed = 21, MaxOutputTokens = 10 };
        var whole = await client.GetResponseAsync(Conversation, options, Ct);
        Assert.Equal(ChatRole.Assistant, whole.Messages.Single().Role);
        Assert.Equal(ChatFinishReason.Length, whole.FinishReason);
        Assert.Equal(10, whole.Usage!.OutputTokenCount);
        // The prompt is the template's rendering, and the answer the engine's generation of it.
        var turns = Conversation.Select(m => new LoraRuntime.Layers.Text.ChatMessage(m.Role.Value, m.Text)).ToList();
        int[] prompt = _files.Tokenizer.Encode(_files.Template.Render(turns, addGenerationPrompt: true));
        Assert.Equal(prompt.Length, whole.Usage.InputTokenCount);
        var direct = await engine.GenerateAsync(prompt, new GenerationOptions { Adapter = "tuned", Temperature = 0.8f, Seed = 21, MaxTokens = 10 }, Ct);
        Assert.Equal(direct.Text, whole.Text);

        var pieces = new StringBuilder();
        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in client.GetStreamingResponseAsync(Conversation, options, Ct))
        {
            pieces.Append(update.Text);
            updates.Add(update);
        }
        Assert.Equal(whole.Text, pieces.ToString());
        Assert.Equal(ChatFinishReason.Length, updates[^1].FinishReason);
        Assert.Equal(10, updates[^1].Contents.OfType<UsageContent>().Single().Details.OutputTokenCount);
        Assert.Equal(whole.Text, updates.ToChatResponse().Text);
    }

    [Fact]
    public async Task The_model_id_picks_the_adapter_its_template_and_scale_and_bad_input_is_refused()
    {
        var client = _services.GetRequiredService<IChatClient>();
        var engine = _services.GetRequiredService<LoraEngine>();
        ChatMessage[] hi = [new(ChatRole.User, "Hi")];
        // The templated adapter renders with its own template.
        var own = await client.GetResponseAsync(hi, new ChatOptions { ModelId = "templated", Temperature = 0, MaxOutputTokens = 3 }, Ct);
        Assert.Equal(_files.Tokenizer.Encode("[user] Hi\n[assistant]").Length, own.Usage!.InputTokenCount);
        // Scale 0 is the base model: the same answer as "base".
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 6 };
        var bare = await client.GetResponseAsync(hi, options, Ct);
        var scaled = await client.GetResponseAsync(hi, new ChatOptions { ModelId = "tuned", Temperature = 0, MaxOutputTokens = 6, AdditionalProperties = new() { ["scale"] = 0.0 } }, Ct);
        Assert.Equal(bare.Text, scaled.Text);
        await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(hi, new ChatOptions { ModelId = "nope" }, Ct));
        await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync(
            [new ChatMessage(ChatRole.User, [new DataContent(new byte[] { 1 }, "image/png")])], cancellationToken: Ct));
        await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync([], cancellationToken: Ct));
        Assert.Equal(0, engine.Stats.Generation.Failed);
    }
}

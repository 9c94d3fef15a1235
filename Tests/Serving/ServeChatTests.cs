using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using LoraRuntime.Cli.Serve;
using LoraRuntime.Cpu;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Layers.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.AI;
using OpenAI;
using OpenAI.Chat;
using Xunit;
using ChatFinishReason = OpenAI.Chat.ChatFinishReason;

// ChatCompletionOptions.Seed is marked experimental by the SDK; the server honours it, and the tests need it.
#pragma warning disable OPENAI001

namespace LoraRuntime.Tests.Serving;

/// <summary>
/// <c>POST /v1/chat/completions</c> on a small Llama-style model with GPT-2's tokenizer.json and SmolLM2's chat
/// template in its tokenizer_config.json, driven by the official OpenAI SDK and by Microsoft.Extensions.AI's chat
/// client over it: the prompt is the template's rendering, streamed answers equal whole ones token for token, an
/// adapter serves under its name and may carry its own template, and the API key is asked for.
/// </summary>
public sealed class ServeChatTests : IAsyncLifetime
{
    private const string Key = "chat-test-key";
    private readonly CpuBackend _backend = new();
    private readonly string _root = Path.Combine(Path.GetTempPath(), "lora-chat-" + Guid.NewGuid().ToString("N"));
    private ServingHost _host = null!;
    private WebApplication _app = null!;
    private OpenAIClient _client = null!;
    private HuggingFaceTokenizer _tokenizer = null!;
    private ChatTemplate _template = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        var files = ChatModel.Write(_backend, _root);
        (_tokenizer, _template) = (files.Tokenizer, files.Template);
        string modelDir = files.Model;
        _host = ServingHost.Open(_backend, modelDir, [("tuned", files.Adapter), ("templated", files.Templated)],
            new ServeOptions(Slots: 4, MaxStepTokens: 64, MaxRank: 4, ApiKey: Key));
        _app = ServeApi.Build(_host, "http://127.0.0.1:0");
        await _app.StartAsync(Ct);
        _client = new OpenAIClient(new ApiKeyCredential(Key), new OpenAIClientOptions { Endpoint = new Uri(_app.Urls.Single() + "/v1") });
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync(CancellationToken.None);
        await _app.DisposeAsync();
        _host.Dispose();
        _backend.Dispose();
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private static readonly OpenAI.Chat.ChatMessage[] Conversation =
    [
        new SystemChatMessage("You answer in one word."), new UserChatMessage("Hello there"),
        new AssistantChatMessage("Hi!"), new UserChatMessage("And now? ünïcödé 🙂"),
    ];

    private static readonly LoraRuntime.Layers.Text.ChatMessage[] Rendered =
    [
        new("system", "You answer in one word."), new("user", "Hello there"), new("assistant", "Hi!"), new("user", "And now? ünïcödé 🙂"),
    ];

    [Fact]
    public async Task The_openai_sdk_lists_models_and_chats_whole_and_streamed()
    {
        var models = (await _client.GetOpenAIModelClient().GetModelsAsync(Ct)).Value;
        Assert.Equal(["base", "templated", "tuned"], models.Select(m => m.Id).Order());

        var chat = _client.GetChatClient("tuned");
        var options = new ChatCompletionOptions { Temperature = 0.7f, Seed = 11, MaxOutputTokenCount = 12 };
        var whole = (await chat.CompleteChatAsync(Conversation, options, Ct)).Value;
        Assert.Equal(ChatMessageRole.Assistant, whole.Role);
        // The prompt is the template's rendering with the generation prompt, tokenized without added tokens.
        int[] prompt = _tokenizer.Encode(_template.Render(Rendered, addGenerationPrompt: true));
        Assert.Equal(prompt.Length, whole.Usage.InputTokenCount);
        Assert.Equal(12, whole.Usage.OutputTokenCount);
        Assert.Equal(ChatFinishReason.Length, whole.FinishReason);
        // The same generation as the scheduler gives that prompt directly.
        var direct = await _host.Scheduler.SubmitAsync(new LoraRuntime.Layers.Serving.CompletionRequest
        {
            Adapter = "tuned", Prompt = prompt, MaxTokens = 12, Sampling = new SamplingOptions(0.7f, 0, 11),
        }, Ct);
        Assert.Equal(direct.Text, whole.Content[0].Text);

        // Streamed: the pieces join to the whole answer, with the usage at the end (the SDK asks for it).
        var pieces = new StringBuilder();
        int usage = 0;
        ChatFinishReason? finish = null;
        await foreach (var update in chat.CompleteChatStreamingAsync(Conversation,
            new ChatCompletionOptions { Temperature = 0.7f, Seed = 11, MaxOutputTokenCount = 12 }, Ct))
        {
            foreach (var part in update.ContentUpdate) pieces.Append(part.Text);
            finish ??= update.FinishReason;
            if (update.Usage is { } u) usage = u.OutputTokenCount;
        }
        Assert.Equal(whole.Content[0].Text, pieces.ToString());
        Assert.Equal(ChatFinishReason.Length, finish);
        Assert.Equal(12, usage);
    }

    [Fact]
    public async Task Microsoft_extensions_ai_chats_through_the_openai_client_with_logprobs_n_and_a_wrong_key_refused()
    {
        IChatClient client = _client.GetChatClient("base").AsIChatClient();
        var messages = Rendered.Select(m => new Microsoft.Extensions.AI.ChatMessage(new ChatRole(m.Role), m.Content)).ToList();
        var options = new ChatOptions { Temperature = 0.5f, Seed = 3, MaxOutputTokens = 8 };
        var response = await client.GetResponseAsync(messages, options, Ct);
        var streamed = new StringBuilder();
        await foreach (var update in client.GetStreamingResponseAsync(messages, options, Ct)) streamed.Append(update.Text);
        Assert.Equal(response.Text, streamed.ToString());
        Assert.Equal(8, response.Usage!.OutputTokenCount);

        // n, logprobs and top_logprobs over plain HTTP: two choices with their own seeds, log-probabilities per token.
        using var http = new HttpClient { BaseAddress = new Uri(_app.Urls.Single()) };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", Key);
        using var content = new StringContent("""
            {"model": "base", "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "n": 2, "temperature": 1, "seed": 5,
             "max_tokens": 4, "logprobs": true, "top_logprobs": 2}
            """, Encoding.UTF8, "application/json");
        using var answer = await http.PostAsync("/v1/chat/completions", content, Ct);
        using var json = JsonDocument.Parse(await answer.Content.ReadAsStringAsync(Ct));
        var choices = json.RootElement.GetProperty("choices");
        Assert.Equal(2, choices.GetArrayLength());
        foreach (var choice in choices.EnumerateArray())
        {
            var tokens = choice.GetProperty("logprobs").GetProperty("content");
            Assert.Equal(4, tokens.GetArrayLength());
            Assert.Equal(choice.GetProperty("message").GetProperty("content").GetString(), string.Concat(tokens.EnumerateArray().Select(t => t.GetProperty("token").GetString())));
            foreach (var token in tokens.EnumerateArray())
            {
                Assert.True(token.GetProperty("logprob").GetSingle() <= 0);
                Assert.Equal(2, token.GetProperty("top_logprobs").GetArrayLength());
            }
        }
        Assert.Equal(8, json.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        // A wrong key: the SDK sees a 401.
        var wrong = new OpenAIClient(new ApiKeyCredential("nope"), new OpenAIClientOptions { Endpoint = new Uri(_app.Urls.Single() + "/v1") });
        var e = await Assert.ThrowsAsync<ClientResultException>(() => wrong.GetChatClient("base").CompleteChatAsync([new UserChatMessage("Hi")], cancellationToken: Ct));
        Assert.Equal(401, e.Status);
    }

    [Fact]
    public async Task An_adapter_may_carry_its_own_template_and_a_template_that_refuses_is_a_400()
    {
        // The templated adapter's prompt is its own template's rendering.
        var whole = (await _client.GetChatClient("templated").CompleteChatAsync([new UserChatMessage("Hi")],
            new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 2 }, Ct)).Value;
        Assert.Equal(_tokenizer.Encode("[user] Hi\n[assistant]").Length, whole.Usage.InputTokenCount);
        using var http = new HttpClient { BaseAddress = new Uri(_app.Urls.Single()) };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", Key);
        foreach (var (body, param) in new[]
        {
            ("""{"model": "base", "messages": []}""", "messages"),
            ("""{"model": "base", "messages": [{"content": "no role"}]}""", "messages"),
            ("""{"model": "base", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}""", "messages"),
            ("""{"model": "base", "messages": [{"role": "user", "content": "Hi"}], "n": 0}""", "n"),
            ("""{"model": "base", "messages": [{"role": "user", "content": "Hi"}], "top_logprobs": 2}""", "top_logprobs"),
            ("""{"model": "base", "messages": [{"role": "user", "content": "Hi"}], "logprobs": true, "top_logprobs": 50}""", "top_logprobs"),
        })
        {
            using var content = new StringContent(body, Encoding.UTF8, "application/json");
            using var response = await http.PostAsync("/v1/chat/completions", content, Ct);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            using var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct));
            Assert.Equal(param, error.RootElement.GetProperty("error").GetProperty("param").GetString());
        }
        using (var unknown = new StringContent("""{"model": "nope", "messages": [{"role": "user", "content": "Hi"}]}""", Encoding.UTF8, "application/json"))
        using (var response = await http.PostAsync("/v1/chat/completions", unknown, Ct))
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
    }
}

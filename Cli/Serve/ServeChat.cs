using System.Text;
using System.Text.Json;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Serving;
using LoraRuntime.Layers.Text;
using LoraRuntime.Layers.Text.Jinja;
using Microsoft.AspNetCore.Http;

namespace LoraRuntime.Cli.Serve;

/// <summary>
/// <c>POST /v1/chat/completions</c>: the messages rendered by the chat template (the adapter's own when it carries one,
/// else the model's from its tokenizer_config.json, else <see cref="ChatTemplate.Plain"/>) with the generation prompt,
/// tokenized as Hugging Face's apply_chat_template does (the template writes the special tokens; none are added), and
/// generated until the end of sequence (the end of the turn for chat models), a stop string or the token budget.
/// Whole or streamed (<c>chat.completion.chunk</c>s: the role, then the content piece by piece, then the finish
/// reason), <c>n</c> choices, <c>logprobs</c>/<c>top_logprobs</c> in the chat layout.
/// </summary>
internal static class ServeChat
{
    private static long _ids;

    public static async Task Complete(HttpContext ctx, ServingHost host)
    {
        var body = await ServeApi.ReadBody(ctx, ServeJsonContext.Default.ChatBody);
        var (model, adapter) = ServeApi.Model(host, body.Model);
        var messages = Messages(body.Messages);
        int n = ServeGeneration.Choices(body.N);
        if (body.TopLogprobs is not null && body.Logprobs != true)
            throw new ServeApi.BadRequest("top_logprobs: needs \"logprobs\": true", "top_logprobs");
        string text;
        try
        {
            text = host.Engine.ChatTemplateFor(adapter).Render(messages, addGenerationPrompt: true);
        }
        catch (JinjaRaisedException e)
        {
            throw new ServeApi.BadRequest($"messages: the chat template refuses them: {e.Message}", "messages");
        }
        catch (JinjaException e)
        {
            throw new ServeApi.BadRequest($"messages: the chat template failed on them: {e.Message}", "messages");
        }
        if (!host.Tokenizer.CanEncode(text)) throw new ServeApi.BadRequest("messages: a character is not in the model's vocabulary", "messages");
        int[] prompt = host.Tokenizer.Encode(text);
        int context = host.Model.Config.BlockSize;
        var request = new CompletionRequest
        {
            Adapter = adapter,
            Prompt = prompt,
            // Unbounded by default, as OpenAI's: up to the end of the turn or of the context.
            MaxTokens = body.MaxCompletionTokens ?? body.MaxTokens ?? Math.Clamp(context - prompt.Length, 1, context),
            Sampling = new SamplingOptions(body.Temperature ?? 1f, body.TopK ?? 0, ServeGeneration.Seed(body.Seed)),
            TopP = body.TopP ?? 1f,
            Stop = ServeApi.Stops(body.Stop),
            IgnoreEndOfSequence = body.IgnoreEos ?? false,
            Logprobs = body.Logprobs == true ? body.TopLogprobs ?? 0 : null,
        };
        try
        {
            host.Scheduler.Validate(request);
        }
        catch (ArgumentException e) when (e.ParamName == "logprobs")
        {
            throw new ServeApi.BadRequest("top_logprobs: " + e.Message, "top_logprobs");
        }
        string id = "chatcmpl-" + Interlocked.Increment(ref _ids);
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        if (body.Stream == true)
        {
            await ServeGeneration.Stream(ctx, host, request, n, body.StreamOptions?.IncludeUsage == true, new Events(ctx, host, request, id, created, model, n));
            return;
        }
        var results = await ServeGeneration.Whole(ctx, host, request, n);
        var choices = results.Select((r, i) => new ChatChoice(i, new ChatMessageOut("assistant", r.Text), r.FinishReason,
            Logprobs(host.Tokenizer, r.Tokens, r.Logprobs))).ToArray();
        await ServeApi.Write(ctx, 200, new ChatResponse(id, "chat.completion", created, model, choices, ServeGeneration.Usage(results)),
            ServeJsonContext.Default.ChatResponse);
    }

    /// <summary>The messages: each an object with a string role and a content that is a string, text parts, or null.</summary>
    private static List<ChatMessage> Messages(JsonElement? element)
    {
        if (element is not { ValueKind: JsonValueKind.Array } array || array.GetArrayLength() == 0)
            throw new ServeApi.BadRequest("messages: required, a non-empty array of {role, content}", "messages");
        var messages = new List<ChatMessage>(array.GetArrayLength());
        int i = 0;
        foreach (var m in array.EnumerateArray())
        {
            if (m.ValueKind != JsonValueKind.Object || !m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String)
                throw new ServeApi.BadRequest($"messages[{i}]: expected an object with a string role", "messages");
            string content = !m.TryGetProperty("content", out var c) ? "" : c.ValueKind switch
            {
                JsonValueKind.String => c.GetString()!,
                JsonValueKind.Null => "",
                JsonValueKind.Array => Parts(c, i),
                _ => throw new ServeApi.BadRequest($"messages[{i}].content: expected a string, an array of text parts, or null", "messages"),
            };
            messages.Add(new ChatMessage(role.GetString()!, content));
            i++;
        }
        return messages;
    }

    private static string Parts(JsonElement parts, int index)
    {
        var text = new StringBuilder();
        foreach (var part in parts.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || type.GetString() != "text"
                || !part.TryGetProperty("text", out var value) || value.ValueKind != JsonValueKind.String)
                throw new ServeApi.BadRequest($"messages[{index}].content: only text parts ({{\"type\": \"text\", \"text\": …}}) are served", "messages");
            text.Append(value.GetString());
        }
        return text.ToString();
    }

    private sealed class Events(HttpContext ctx, ServingHost host, CompletionRequest request, string id, long created, string model, int n)
        : ServeGeneration.IEvents
    {
        private readonly bool[] _started = new bool[n];

        public Task Token(int choice, string text, GeneratedToken token, int offset)
        {
            var logprobs = request.Logprobs is null ? null
                : Logprobs(host.Tokenizer, [token.Id], new TokenLogprobs([token.Logprob], token.TopIds.ToArray(), token.TopLogprobs.ToArray(), token.TopIds.Length));
            return Chunk([new ChatChunkChoice(choice, Delta(choice, text), null, logprobs)], null);
        }

        public Task End(int choice, string rest, CompletionResult result) =>
            Chunk([new ChatChunkChoice(choice, Delta(choice, rest.Length > 0 ? rest : null), result.FinishReason, null)], null);

        public Task Usage(CompletionResult[] results) => Chunk([], ServeGeneration.Usage(results));

        /// <summary>A choice's first delta names the role, as OpenAI's do.</summary>
        private ChatDelta Delta(int choice, string? content)
        {
            if (_started[choice]) return new ChatDelta(null, content);
            _started[choice] = true;
            return new ChatDelta("assistant", content ?? "");
        }

        private Task Chunk(ChatChunkChoice[] choices, CompletionUsage? usage) =>
            ServeGeneration.Event(ctx, new ChatChunk(id, "chat.completion.chunk", created, model, choices, usage), ServeJsonContext.Default.ChatChunk);
    }

    /// <summary>The chat layout of <paramref name="logprobs"/>: per token its text, log-probability and UTF-8 bytes, and its alternatives.</summary>
    private static ChatLogprobs? Logprobs(ITokenizer tokenizer, int[] ids, TokenLogprobs? logprobs)
    {
        if (logprobs is null) return null;
        int top = logprobs.TopCount;
        ChatTokenLogprob Token(int id, float logprob)
        {
            string text = ActiveSequence.DecodeKnown(tokenizer, [id]);
            return new ChatTokenLogprob(text, logprob, Encoding.UTF8.GetBytes(text).Select(b => (int)b).ToArray());
        }
        var content = new ChatContentLogprob[ids.Length];
        for (int i = 0; i < ids.Length; i++)
        {
            var chosen = Token(ids[i], logprobs.Chosen[i]);
            var alternatives = new ChatTokenLogprob[top];
            for (int j = 0; j < top; j++) alternatives[j] = Token(logprobs.TopIds[i * top + j], logprobs.TopLogprobs[i * top + j]);
            content[i] = new ChatContentLogprob(chosen.Token, chosen.Logprob, chosen.Bytes, alternatives);
        }
        return new ChatLogprobs(content);
    }
}

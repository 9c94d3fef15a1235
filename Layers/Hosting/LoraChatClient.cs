using System.Runtime.CompilerServices;
using LoraRuntime.Layers.Text.Jinja;
using Microsoft.Extensions.AI;
using ChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace LoraRuntime.Hosting;

/// <summary>
/// A <see cref="LoraEngine"/> as a Microsoft.Extensions.AI <see cref="IChatClient"/>, for services that embed the
/// runtime: the messages are rendered by the chat template of the adapter named by
/// <see cref="ChatOptions.ModelId"/> (null or the base model's name: the base model) — the adapter's own when its
/// directory carries one, else the model's from its tokenizer_config.json, else a plain "role: content" template —
/// tokenized as Hugging Face's apply_chat_template does, and generated, batched with the engine's other generations,
/// until the end of the turn, a stop sequence, <see cref="ChatOptions.MaxOutputTokens"/> or the end of the reserved
/// sequence. <see cref="ChatOptions.Temperature"/> (default 1), <see cref="ChatOptions.TopP"/>,
/// <see cref="ChatOptions.TopK"/>, <see cref="ChatOptions.Seed"/> and <see cref="ChatOptions.StopSequences"/> apply;
/// <c>AdditionalProperties["scale"]</c> multiplies the adapter's scale. Messages hold text only; tools are refused.
/// The client does not own the engine.
/// </summary>
public sealed class LoraChatClient : IChatClient
{
    /// <summary>The model id that selects the base model unless the client is given another.</summary>
    public const string DefaultBaseName = "base";

    private readonly LoraEngine _engine;
    private readonly string _baseName;
    private readonly ChatClientMetadata _metadata;

    /// <summary>A chat client over <paramref name="engine"/>, which must have a tokenizer (a model directory loaded with one).</summary>
    public LoraChatClient(LoraEngine engine, string baseName = DefaultBaseName)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentException.ThrowIfNullOrWhiteSpace(baseName);
        if (!engine.HasTokenizer)
            throw new ArgumentException("engine: a chat client needs an engine with a tokenizer (a model directory loaded with one)", nameof(engine));
        _engine = engine;
        _baseName = baseName;
        _metadata = new ChatClientMetadata("lora-runtime", defaultModelId: baseName);
    }

    /// <inheritdoc/>
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var (prompt, generation, model) = Prepare(messages, options);
        var result = await _engine.GenerateAsync(prompt, generation, cancellationToken).ConfigureAwait(false);
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, result.Text))
        {
            ModelId = model,
            FinishReason = Finish(result),
            Usage = Usage(result),
            CreatedAt = DateTimeOffset.UtcNow,
        };
    }

    /// <inheritdoc/>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var (prompt, generation, model) = Prepare(messages, options);
        string id = Guid.NewGuid().ToString("N");
        await foreach (var (text, result) in _engine.StreamAsync(prompt, generation, cancellationToken).ConfigureAwait(false))
        {
            var update = new ChatResponseUpdate(ChatRole.Assistant, text) { ModelId = model, ResponseId = id, MessageId = id };
            if (result is not null)
            {
                update.FinishReason = Finish(result);
                update.Contents.Add(new UsageContent(Usage(result)));
            }
            yield return update;
        }
    }

    /// <inheritdoc/>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return _metadata;
        if (serviceType == typeof(LoraEngine)) return _engine;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Nothing to release: the engine belongs to whoever made it.</summary>
    public void Dispose()
    {
    }

    private (int[] Prompt, GenerationOptions Options, string Model) Prepare(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        string model = options?.ModelId ?? _baseName;
        string? adapter = model == _baseName ? null : model;
        if (adapter is not null && !_engine.Adapters.Contains(adapter))
            throw new ArgumentException($"options.ModelId: no adapter '{adapter}' is loaded; loaded: {string.Join(", ", _engine.Adapters)} (or '{_baseName}' for the base model)", nameof(options));
        if (options?.Tools is { Count: > 0 }) throw new NotSupportedException("options.Tools: tool calling is not served");
        var turns = new List<Layers.Text.ChatMessage>();
        foreach (var message in messages)
        {
            ArgumentNullException.ThrowIfNull(message, nameof(messages));
            foreach (var content in message.Contents)
                if (content is not TextContent)
                    throw new NotSupportedException($"messages: only text is served; a {message.Role} message holds a {content.GetType().Name}");
            turns.Add(new Layers.Text.ChatMessage(message.Role.Value, message.Text));
        }
        if (turns.Count == 0) throw new ArgumentException("messages: expected at least one message", nameof(messages));
        string text;
        try
        {
            text = _engine.ChatTemplateFor(adapter).Render(turns, addGenerationPrompt: true);
        }
        catch (JinjaException e)
        {
            throw new ArgumentException($"messages: the chat template refuses them: {e.Message}", nameof(messages), e);
        }
        var tokenizer = _engine.Tokenizer!;
        if (!tokenizer.CanEncode(text)) throw new ArgumentException("messages: a character is not in the model's vocabulary", nameof(messages));
        int[] prompt = tokenizer.Encode(text);
        int room = Math.Max(1, _engine.MaxSequence - prompt.Length);
        var generation = new GenerationOptions
        {
            Adapter = adapter,
            Scale = Scale(options),
            MaxTokens = options?.MaxOutputTokens ?? room,
            Temperature = options?.Temperature ?? 1f,
            TopP = options?.TopP ?? 1f,
            TopK = options?.TopK ?? 0,
            Seed = options?.Seed is long seed ? unchecked((ulong)seed) : null,
            Stop = options?.StopSequences is { } stops ? [.. stops] : [],
        };
        return (prompt, generation, model);
    }

    private static float Scale(ChatOptions? options)
    {
        if (options?.AdditionalProperties is not { } extra || !extra.TryGetValue("scale", out object? value) || value is null) return 1f;
        return value switch
        {
            float f => f,
            double d => (float)d,
            int i => i,
            _ => throw new ArgumentException($"options.AdditionalProperties[\"scale\"]: expected a number; got a {value.GetType().Name}", nameof(options)),
        };
    }

    private static ChatFinishReason Finish(GenerationResult result) => result.FinishReason == "stop" ? ChatFinishReason.Stop : ChatFinishReason.Length;

    private static UsageDetails Usage(GenerationResult result) => new()
    {
        InputTokenCount = result.PromptTokens, OutputTokenCount = result.Tokens.Length, TotalTokenCount = result.PromptTokens + result.Tokens.Length,
    };
}

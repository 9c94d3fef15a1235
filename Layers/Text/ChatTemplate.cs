using System.Text.Json;
using LoraRuntime.IO;
using LoraRuntime.Layers.Text.Jinja;

namespace LoraRuntime.Layers.Text;

/// <summary>
/// A model's chat template (the Jinja text in tokenizer_config.json's <c>chat_template</c>), rendered the way Hugging
/// Face renders it: <c>messages</c> as a list of {role, content}, <c>add_generation_prompt</c>, the tokenizer's
/// special tokens (<c>bos_token</c>, <c>eos_token</c>, …) and any further variables (<c>date_string</c>,
/// <c>tools</c>, …). The interpreter and its limits are <see cref="JinjaTemplate"/>'s.
/// </summary>
internal sealed class ChatTemplate
{
    /// <summary>The key of tokenizer_config.json that holds the template.</summary>
    public const string ConfigKey = "chat_template";

    /// <summary>The file newer transformers versions save the template in, beside tokenizer_config.json.</summary>
    public const string JinjaFileName = "chat_template.jinja";

    private static readonly string[] SpecialTokenKeys = ["bos_token", "eos_token", "unk_token", "pad_token"];

    private readonly JinjaTemplate _template;

    private ChatTemplate(JinjaTemplate template, IReadOnlyDictionary<string, string> specialTokens)
    {
        _template = template;
        SpecialTokens = specialTokens;
    }

    /// <summary>The template's text.</summary>
    public string Source => _template.Source;

    /// <summary>
    /// The special tokens read with the template from tokenizer_config.json (bos_token, eos_token, unk_token,
    /// pad_token, those it names), which every render gets unless its variables give them; empty after <see cref="Parse"/>.
    /// </summary>
    public IReadOnlyDictionary<string, string> SpecialTokens { get; }

    /// <summary>
    /// The template of a model or adapter without one (our character and GPT-2 models): each message as
    /// "role: content" on its line, and "assistant:" to prompt the reply.
    /// </summary>
    public static ChatTemplate Plain { get; } = Parse(
        "{% for message in messages %}{{ message['role'] + ': ' + message['content'] + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}");

    /// <summary>
    /// The template a model or adapter directory carries: its tokenizer_config.json's chat_template, or a
    /// chat_template.jinja; null when it has neither.
    /// </summary>
    public static ChatTemplate? Of(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        string config = Path.Combine(directory, HuggingFaceTokenizer.ConfigFileName);
        if (File.Exists(config))
            try
            {
                return FromTokenizerConfig(config);
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{config}: not valid JSON: {e.Message}", e);
            }
        string jinja = Path.Combine(directory, JinjaFileName);
        if (!File.Exists(jinja)) return null;
        try
        {
            return Parse(InputFiles.ReadAllText(jinja));
        }
        catch (JinjaSyntaxException e)
        {
            throw new InvalidDataException($"{jinja}: the chat template does not parse: {e.Message}", e);
        }
    }

    /// <summary>Parses a template's text; a <see cref="JinjaSyntaxException"/> names the line and column it cannot read.</summary>
    public static ChatTemplate Parse(string source) => new(JinjaTemplate.Parse(source), new Dictionary<string, string>());

    /// <summary>
    /// The prompt text for <paramref name="messages"/>. With <paramref name="addGenerationPrompt"/> the template adds
    /// the header that starts the assistant's reply. <paramref name="variables"/> carries the rest the template reads
    /// (bos_token, eos_token, date_string, tools, …: strings, booleans, numbers, lists, dictionaries, JSON); it may not
    /// name <c>messages</c> or <c>add_generation_prompt</c>. A template that refuses the conversation (a role order it
    /// does not accept) throws <see cref="JinjaRaisedException"/> with its message; other failures are
    /// <see cref="JinjaException"/>s naming the template's line and column.
    /// </summary>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt, IReadOnlyDictionary<string, object?>? variables = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var context = new Dictionary<string, object?>(StringComparer.Ordinal);
        var list = new List<JinjaValue>(messages.Count);
        foreach (var message in messages)
        {
            ArgumentNullException.ThrowIfNull(message, nameof(messages));
            var turn = new JinjaDict();
            turn.Entries["role"] = new JinjaString(message.Role);
            turn.Entries["content"] = new JinjaString(message.Content);
            list.Add(turn);
        }
        context["messages"] = new JinjaList(list);
        context["add_generation_prompt"] = addGenerationPrompt;
        foreach (var (key, token) in SpecialTokens) context[key] = token;
        if (variables is not null)
            foreach (var (key, value) in variables)
            {
                if (key is "messages" or "add_generation_prompt")
                    throw new ArgumentException($"the variable '{key}' is set from the render's own arguments; pass it there", nameof(variables));
                context[key] = value;
            }
        return _template.Render(context);
    }

    /// <summary>
    /// The chat template of a tokenizer_config.json: its <c>chat_template</c> (a string, or a list of {name, template}
    /// of which the one named "default" is used), else a chat_template.jinja beside it; null when it has neither. The
    /// special tokens the file names come with it. A template that does not parse, or a list without a default, is an
    /// <see cref="InvalidDataException"/> naming the file.
    /// </summary>
    public static ChatTemplate? FromTokenizerConfig(string tokenizerConfigPath)
    {
        ArgumentNullException.ThrowIfNull(tokenizerConfigPath);
        using var document = JsonDocument.Parse(InputFiles.ReadAllBytes(tokenizerConfigPath));
        var root = document.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{tokenizerConfigPath}: expected a JSON object, found {root.ValueKind}");

        string? source = null, origin = tokenizerConfigPath;
        if (root.TryGetProperty(ConfigKey, out var template) && template.ValueKind != JsonValueKind.Null)
            source = template.ValueKind switch
            {
                JsonValueKind.String => template.GetString(),
                JsonValueKind.Array => DefaultOf(template, tokenizerConfigPath),
                _ => throw new InvalidDataException($"{tokenizerConfigPath}: {ConfigKey} must be a string or a list of {{name, template}}, found {template.ValueKind}"),
            };
        else
        {
            string beside = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(tokenizerConfigPath))!, JinjaFileName);
            if (File.Exists(beside))
            {
                source = InputFiles.ReadAllText(beside);
                origin = beside;
            }
        }
        if (source is null) return null;

        var specialTokens = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string key in SpecialTokenKeys)
            if (root.TryGetProperty(key, out var token) && TokenText(token) is { } text) specialTokens[key] = text;
        try
        {
            return new ChatTemplate(JinjaTemplate.Parse(source), specialTokens);
        }
        catch (JinjaSyntaxException e)
        {
            throw new InvalidDataException($"{origin}: the chat template does not parse: {e.Message}", e);
        }
    }

    private static string DefaultOf(JsonElement templates, string path)
    {
        var names = new List<string>();
        foreach (var entry in templates.EnumerateArray())
        {
            if (entry.ValueKind != JsonValueKind.Object || !entry.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String)
                throw new InvalidDataException($"{path}: each entry of {ConfigKey} must be an object with a string name");
            names.Add(name.GetString()!);
            if (name.GetString() != "default") continue;
            if (!entry.TryGetProperty("template", out var text) || text.ValueKind != JsonValueKind.String)
                throw new InvalidDataException($"{path}: the default {ConfigKey} has no template string");
            return text.GetString()!;
        }
        throw new InvalidDataException($"{path}: {ConfigKey} has no template named \"default\" (it has {string.Join(", ", names.Select(n => $"\"{n}\""))})");
    }

    // A special token is a string, or an AddedToken object with its text in "content".
    private static string? TokenText(JsonElement token) => token.ValueKind switch
    {
        JsonValueKind.String => token.GetString(),
        JsonValueKind.Object when token.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String => content.GetString(),
        _ => null,
    };
}

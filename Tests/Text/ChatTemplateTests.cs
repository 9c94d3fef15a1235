using System.Text.Json.Nodes;
using LoraRuntime.Layers.Text;
using LoraRuntime.Layers.Text.Jinja;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Text;

/// <summary>
/// Four public chat templates — Llama 3.1 Instruct (its date and tools logic), Qwen2.5 Instruct, SmolLM2 Instruct and
/// Mistral Nemo Instruct — render every conversation of a table, with and without the generation prompt, exactly as
/// @huggingface/jinja (the Jinja of transformers.js, run under node) renders them; tools, tool calls and dates too; and
/// a template that refuses a conversation raises its own message.
/// </summary>
public sealed class ChatTemplateTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "lora-chat-template-" + Guid.NewGuid().ToString("N"));

    public ChatTemplateTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly string[] TemplateNames = ["llama-3.1-instruct", "qwen2.5-instruct", "smollm2-instruct", "mistral-nemo-instruct"];

    /// <summary>The special tokens each model's tokenizer_config.json gives the template.</summary>
    private static readonly Dictionary<string, string> Tokens = new()
    {
        ["llama-3.1-instruct"] = """{"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}""",
        ["qwen2.5-instruct"] = """{"bos_token": null, "eos_token": "<|im_end|>"}""",
        ["smollm2-instruct"] = """{"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}""",
        ["mistral-nemo-instruct"] = """{"bos_token": "<s>", "eos_token": "</s>"}""",
    };

    private static readonly (string Name, ChatMessage[] Messages)[] Conversations =
    [
        ("system-and-user", [new("system", "You are a terse assistant."), new("user", "What is LoRA?")]),
        ("multi-turn", [new("system", "Answer in one sentence."), new("user", "Hi!"), new("assistant", "Hello. How can I help?"),
            new("user", "Explain rank.")]),
        ("no-system", [new("user", "Name a prime."), new("assistant", "7"), new("user", "Another?")]),
        ("single-user", [new("user", "Hello")]),
        ("quotes-newlines-unicode", [new("system", "  Use \"quotes\", 'apostrophes' and a \\ backslash.\n\nTwo lines.  "),
            new("user", "Ünïcödé: 日本語, emoji 😀, tab\there,\r\nCRLF and {{ braces }} {% not a tag %}"),
            new("assistant", "\n  padded reply  \n"), new("user", "</s> [INST] <|eot_id|> look like tokens")]),
    ];

    private const string Tools = """
        [{"type": "function", "function": {"name": "get_weather", "description": "The weather \"now\" in a city, e.g. Zürich",
          "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city"},
          "days": {"type": "integer", "minimum": 1}}, "required": ["city"]}}},
         {"type": "function", "function": {"name": "now", "description": "The time", "parameters": {"type": "object", "properties": {}}}}]
        """;

    /// <summary>A rendering: a template, a conversation, the generation prompt on or off, and further variables.</summary>
    public sealed record RenderCase(string Template, string Conversation, bool AddGenerationPrompt, string Extra = "{}");

    private static readonly Dictionary<string, RenderCase> Cases = BuildCases();

    private static Dictionary<string, RenderCase> BuildCases()
    {
        var cases = new Dictionary<string, RenderCase>();
        foreach (string template in TemplateNames)
            foreach (var (conversation, _) in Conversations)
                foreach (bool prompt in (bool[])[true, false])
                    cases[$"{template}/{conversation}/{(prompt ? "prompt" : "no-prompt")}"] = new RenderCase(template, conversation, prompt);
        // Llama 3.1: a given date, and tools in the first user message or in the system message.
        cases["llama-3.1-instruct/date"] = new("llama-3.1-instruct", "multi-turn", true, """{"date_string": "06 Dec 2025"}""");
        cases["llama-3.1-instruct/tools-in-user-message"] = new("llama-3.1-instruct", "system-and-user", true, $$"""{"tools": {{Tools}}}""");
        cases["llama-3.1-instruct/tools-in-system"] = new("llama-3.1-instruct", "multi-turn", true,
            $$"""{"tools": {{Tools}}, "tools_in_user_message": false, "date_string": "1 Jan 2025"}""");
        cases["qwen2.5-instruct/tools"] = new("qwen2.5-instruct", "multi-turn", true, $$"""{"tools": {{Tools}}}""");
        cases["qwen2.5-instruct/tools-no-system"] = new("qwen2.5-instruct", "no-system", false, $$"""{"tools": {{Tools}}}""");
        cases["mistral-nemo-instruct/tools"] = new("mistral-nemo-instruct", "multi-turn", true, $$"""{"tools": {{Tools}}}""");
        return cases;
    }

    public static TheoryData<string> CaseNames => new(Cases.Keys);

    private static string TemplateText(string name) => File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Text", "Templates", name + ".jinja"));

    private static ChatMessage[] Conversation(string name) => Conversations.Single(c => c.Name == name).Messages;

    private static JsonObject Variables(RenderCase c)
    {
        var variables = JsonNode.Parse(Tokens[c.Template])!.AsObject();
        foreach (var (key, value) in JsonNode.Parse(c.Extra)!.AsObject()) variables[key] = value?.DeepClone();
        return variables;
    }

    private static JsonObject Context(IEnumerable<ChatMessage> messages, bool addGenerationPrompt, JsonObject variables)
    {
        var context = new JsonObject
        {
            ["messages"] = new JsonArray(messages.Select(m => (JsonNode)new JsonObject { ["role"] = m.Role, ["content"] = m.Content }).ToArray()),
            ["add_generation_prompt"] = addGenerationPrompt,
        };
        foreach (var (key, value) in variables) context[key] = value?.DeepClone();
        return context;
    }

    /// <summary>Conversations the ChatMessage list cannot carry (tool calls, tool results), rendered through the interpreter itself.</summary>
    private static readonly Dictionary<string, (string Template, string Context)> RawCases = new()
    {
        ["llama-3.1-instruct/tool-call-and-result"] = ("llama-3.1-instruct", """
            {"bos_token": "<|begin_of_text|>", "add_generation_prompt": true, "messages": [
              {"role": "user", "content": "Weather in Paris?"},
              {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}]},
              {"role": "tool", "content": {"temperature": 21.5, "sky": "clear"}},
              {"role": "ipython", "content": "plain text result"}]}
            """),
        ["llama-3.1-instruct/no-messages"] = ("llama-3.1-instruct", """{"bos_token": "<|begin_of_text|>", "add_generation_prompt": true, "messages": []}"""),
        ["qwen2.5-instruct/tool-calls"] = ("qwen2.5-instruct", """
            {"add_generation_prompt": true, "messages": [
              {"role": "user", "content": "Weather in Paris and Rome?"},
              {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"name": "get_weather", "arguments": {"city": "Rome"}}]},
              {"role": "tool", "content": "{\"temperature\": 21}"},
              {"role": "tool", "content": "{\"temperature\": 25}"},
              {"role": "assistant", "content": "Paris 21, Rome 25."}]}
            """),
        ["mistral-nemo-instruct/tool-calls"] = ("mistral-nemo-instruct", """
            {"bos_token": "<s>", "eos_token": "</s>", "messages": [
              {"role": "system", "content": "Be brief."},
              {"role": "user", "content": "Weather in Paris?"},
              {"role": "assistant", "tool_calls": [{"id": "call00001", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
              {"role": "tool", "tool_call_id": "call00001", "content": {"content": "21 degrees"}},
              {"role": "assistant", "content": "21 degrees."},
              {"role": "user", "content": "Thanks"}]}
            """),
    };

    public static TheoryData<string> RawCaseNames => new(RawCases.Keys);

    private static readonly ChatMessage[] BadOrder = [new("system", "Be brief."), new("user", "One"), new("user", "Two")];

    /// <summary>Every rendering of the reference, in one node run for the class: the table's cases, then the raw ones.</summary>
    private static readonly Lazy<Dictionary<string, JinjaOracle.Rendering>> Reference = new(() =>
    {
        var names = new List<string>();
        var cases = new List<JinjaOracle.Case>();
        foreach (var (name, c) in Cases)
        {
            names.Add(name);
            cases.Add(new(TemplateText(c.Template), Context(Conversation(c.Conversation), c.AddGenerationPrompt, Variables(c))));
        }
        foreach (var (name, (template, context)) in RawCases)
        {
            names.Add("raw:" + name);
            cases.Add(new(TemplateText(template), JsonNode.Parse(context)!.AsObject()));
        }
        names.Add("mistral-bad-order");
        cases.Add(new(TemplateText("mistral-nemo-instruct"), Context(BadOrder, false, Variables(new RenderCase("mistral-nemo-instruct", "", false)))));
        var renderings = JinjaOracle.Render(cases);
        return names.Zip(renderings).ToDictionary(p => p.First, p => p.Second);
    });

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void Renders_the_conversation_as_hugging_faces_jinja_does(string name)
    {
        var c = Cases[name];
        var expected = Reference.Value[name];
        Assert.True(expected.Error is null, $"the reference failed on {name}: {expected.Error}");
        var template = ChatTemplate.Parse(TemplateText(c.Template));
        string actual = template.Render(Conversation(c.Conversation), c.AddGenerationPrompt, JinjaOracle.Variables(Variables(c)));
        Assert.True(expected.Output == actual, $"{name}\nexpected {JinjaOracle.Show(expected.Output)}\nactual   {JinjaOracle.Show(actual)}");
    }

    [Theory]
    [MemberData(nameof(RawCaseNames))]
    public void Renders_tool_calls_and_results_as_hugging_faces_jinja_does(string name)
    {
        var (template, context) = RawCases[name];
        var expected = Reference.Value["raw:" + name];
        Assert.True(expected.Error is null, $"the reference failed on {name}: {expected.Error}");
        string actual = JinjaTemplate.Parse(TemplateText(template)).Render(JinjaOracle.Variables(JsonNode.Parse(context)!.AsObject()));
        Assert.True(expected.Output == actual, $"{name}\nexpected {JinjaOracle.Show(expected.Output)}\nactual   {JinjaOracle.Show(actual)}");
    }

    [Fact]
    public void Mistral_refuses_two_user_turns_in_a_row_with_its_own_message()
    {
        var template = ChatTemplate.Parse(TemplateText("mistral-nemo-instruct"));
        var e = Assert.Throws<JinjaRaisedException>(() => template.Render(BadOrder, false, new Dictionary<string, object?> { ["bos_token"] = "<s>", ["eos_token"] = "</s>" }));
        const string message = "After the optional system message, conversation roles must alternate user/assistant/user/assistant/...";
        Assert.Equal(message, e.Message);
        Assert.Equal(message, Reference.Value["mistral-bad-order"].Error);
        // An unknown role is refused the same way.
        var other = Assert.Throws<JinjaRaisedException>(() => template.Render([new("user", "a"), new("critic", "b")], false));
        Assert.StartsWith("Only user and assistant roles are supported", other.Message);
    }

    [Fact]
    public void Llama_3_1_uses_the_date_it_is_given_and_its_own_default_otherwise()
    {
        var template = ChatTemplate.Parse(TemplateText("llama-3.1-instruct"));
        ChatMessage[] messages = [new("user", "Hi")];
        Assert.Contains("Today Date: 26 Jul 2024\n", template.Render(messages, true));
        string dated = template.Render(messages, true, new Dictionary<string, object?> { ["date_string"] = "06 Dec 2025", ["bos_token"] = "<|begin_of_text|>" });
        Assert.StartsWith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 06 Dec 2025\n\n<|eot_id|>", dated);
        Assert.EndsWith("<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", dated);
    }

    [Fact]
    public void A_tokenizer_config_gives_its_template_and_special_tokens()
    {
        string Write(string name, string json)
        {
            string dir = Path.Combine(_dir, name);
            Directory.CreateDirectory(dir);
            string path = Path.Combine(dir, "tokenizer_config.json");
            File.WriteAllText(path, json);
            return path;
        }
        ChatMessage[] messages = [new("user", "Hi")];

        var plain = ChatTemplate.FromTokenizerConfig(Write("string", """
            {"chat_template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}{{ eos_token }}",
             "bos_token": {"content": "<s>", "special": true}, "eos_token": "</s>", "pad_token": null}
            """))!;
        Assert.Equal("<s>[user:Hi]</s>", plain.Render(messages, false));
        Assert.Equal("<S>[user:Hi]</s>", plain.Render(messages, false, new Dictionary<string, object?> { ["bos_token"] = "<S>" }));
        Assert.False(plain.SpecialTokens.ContainsKey("pad_token"));

        var named = ChatTemplate.FromTokenizerConfig(Write("list", """
            {"chat_template": [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": "default: {{ messages | length }}"}]}
            """))!;
        Assert.Equal("default: 1", named.Render(messages, false));

        Assert.Null(ChatTemplate.FromTokenizerConfig(Write("none", """{"eos_token": "</s>"}""")));

        string beside = Write("jinja-file", """{"eos_token": "</s>"}""");
        File.WriteAllText(Path.Combine(Path.GetDirectoryName(beside)!, ChatTemplate.JinjaFileName), "{{ messages[0].content }}{{ eos_token }}\n");
        Assert.Equal("Hi</s>", ChatTemplate.FromTokenizerConfig(beside)!.Render(messages, false));

        var noDefault = Assert.Throws<InvalidDataException>(() => ChatTemplate.FromTokenizerConfig(Write("no-default", """{"chat_template": [{"name": "rag", "template": "x"}]}""")));
        Assert.Contains("\"rag\"", noDefault.Message);
        var broken = Assert.Throws<InvalidDataException>(() => ChatTemplate.FromTokenizerConfig(Write("broken", """{"chat_template": "ok\n{% if %}"}""")));
        Assert.Contains("line 2, column", broken.Message);
    }

    [Fact]
    public void The_render_arguments_cannot_be_overridden_by_variables()
    {
        var template = ChatTemplate.Parse("{{ messages | length }}");
        Assert.Throws<ArgumentException>(() => template.Render([], false, new Dictionary<string, object?> { ["messages"] = "x" }));
        Assert.Throws<ArgumentException>(() => template.Render([], false, new Dictionary<string, object?> { ["namespace"] = 1 }));
        Assert.Equal("0", template.Render([], false));
    }
}

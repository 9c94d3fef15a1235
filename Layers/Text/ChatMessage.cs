namespace LoraRuntime.Layers.Text;

/// <summary>One turn of a conversation: its role ("system", "user", "assistant", …) and its text.</summary>
internal sealed record ChatMessage(string Role, string Content);

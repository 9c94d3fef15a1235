namespace LoraRuntime.Layers.Text;

/// <summary>
/// Text to token ids and back: the character tokenizer of our own models, GPT-2's byte-level BPE, a Hugging Face
/// tokenizer.json.
/// </summary>
internal interface ITokenizer
{
    /// <summary>V: every id is in [0, V).</summary>
    int VocabularySize { get; }

    /// <summary>True when <see cref="Encode"/> accepts <paramref name="text"/>.</summary>
    bool CanEncode(string text);

    /// <summary>The ids of <paramref name="text"/>; text the tokenizer cannot represent is an <see cref="ArgumentException"/>.</summary>
    int[] Encode(string text);

    /// <summary>
    /// The ids of a prompt: <see cref="Encode"/> with the special tokens the tokenizer puts around a text, such as
    /// Llama's begin-of-text token (Hugging Face's <c>add_special_tokens</c>).
    /// </summary>
    int[] EncodePrompt(string text) => Encode(text);

    /// <summary>The ids that end a generated sequence (end of sequence, end of turn); empty when the tokenizer names none.</summary>
    IReadOnlyList<int> EndOfSequence => [];

    /// <summary>The text of <paramref name="ids"/>; an id outside [0, V) is an <see cref="ArgumentOutOfRangeException"/>.</summary>
    string Decode(ReadOnlySpan<int> ids);
}

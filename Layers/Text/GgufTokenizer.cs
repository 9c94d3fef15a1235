using System.Text.Json;
using LoraRuntime.IO;

namespace LoraRuntime.Layers.Text;

/// <summary>
/// The tokenizer a GGUF file describes in its tokenizer.ggml.* keys, as llama.cpp's converter writes them: a byte-level
/// BPE ("gpt2": the tokens by id, the merges, the token types) with the pre-tokenizer its tokenizer.ggml.pre names
/// (GPT-2's pattern for "default"/"gpt-2", Llama 3's for "llama-bpe", Qwen2's for "qwen2"), control and user-defined
/// tokens as special tokens, tokenizer.ggml.add_bos_token's begin-of-sequence token before a prompt, and generation
/// ending at the end-of-sequence and end-of-turn ids. It is read through the same reader as a tokenizer.json: the keys
/// are written as one. SentencePiece vocabularies ("llama": scores, no merges) and other pre-tokenizers are not read.
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
        if (model.AsString() != "gpt2")
        {
            reason = $"tokenizer.ggml.model is '{model.AsString()}'; byte-level BPE vocabularies ('gpt2') are read from GGUF, SentencePiece ones not yet";
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
        var types = meta.TryGetValue("tokenizer.ggml.token_type", out var tt) && tt.Value is object[] kinds ? kinds : [];
        int? Id(string key) => meta.TryGetValue(key, out var v) ? checked((int)v.AsInteger()) : null;
        int? bos = Id("tokenizer.ggml.bos_token_id");
        bool addBos = meta.TryGetValue("tokenizer.ggml.add_bos_token", out var add) && add.Value is bool yes && yes;
        var end = new List<int>();
        foreach (string key in new[] { "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id" })
            if (Id(key) is { } id && (uint)id < (uint)tokens.Length && !end.Contains(id)) end.Add(id);

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
            json.WriteStartArray("added_tokens");
            for (int i = 0; i < types.Length && i < tokens.Length; i++)
                if (Convert.ToInt32(types[i], System.Globalization.CultureInfo.InvariantCulture) is 3 or 4) // control, user-defined
                {
                    json.WriteStartObject();
                    json.WriteNumber("id", i);
                    json.WriteString("content", tokens[i]);
                    json.WriteBoolean("special", true);
                    json.WriteEndObject();
                }
            json.WriteEndArray();
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
            if (addBos && bos is { } b && (uint)b < (uint)tokens.Length)
            {
                json.WriteStartObject("post_processor");
                json.WriteString("type", "TemplateProcessing");
                json.WriteStartArray("single");
                json.WriteStartObject();
                json.WriteStartObject("SpecialToken");
                json.WriteString("id", tokens[b]);
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
                json.WriteStartObject(tokens[b]);
                json.WriteString("id", tokens[b]);
                json.WriteStartArray("ids");
                json.WriteNumberValue(b);
                json.WriteEndArray();
                json.WriteStartArray("tokens");
                json.WriteStringValue(tokens[b]);
                json.WriteEndArray();
                json.WriteEndObject();
                json.WriteEndObject();
                json.WriteEndObject();
            }
            json.WriteStartObject("decoder");
            json.WriteString("type", "ByteLevel");
            json.WriteEndObject();
            json.WriteEndObject();
        }
        reason = null;
        return HuggingFaceTokenizer.FromJson(stream.ToArray(), gguf.Path, end);
    }

    /// <summary>The tokenizer of the GGUF file at <paramref name="path"/>, or null with the reason.</summary>
    public static HuggingFaceTokenizer? TryRead(string path, out string? reason)
    {
        using var gguf = GgufReader.Open(path);
        return TryRead(gguf, out reason);
    }
}

namespace LoraRuntime.IO;

/// <summary>
/// Reading the small files of a model or adapter directory (configurations, tokenizers, templates) with a bound: a file
/// larger than it is refused before it is read, and one that reports no length — empty, or not a regular file (a device,
/// a pipe: /dev/zero, a FIFO) — is refused before it is opened, which for a pipe would block.
/// </summary>
public static class InputFiles
{
    /// <summary>The bound of a configuration file (config.json, adapter_config.json, tokenizer_config.json, an index).</summary>
    public const long ConfigBytes = 16L << 20;

    /// <summary>The bound of a tokenizer's vocabulary file (tokenizer.json, vocab.json, merges.txt).</summary>
    public const long TokenizerBytes = 512L << 20;

    /// <summary>The bytes of <paramref name="path"/>, at most <paramref name="maxBytes"/>; an <see cref="InvalidDataException"/> otherwise.</summary>
    public static byte[] ReadAllBytes(string path, long maxBytes = ConfigBytes)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such file", path);
        long length = LengthOf(path);
        if (length == 0) throw new InvalidDataException($"{path}: empty, or not a regular file (a device, pipe or socket)");
        if (length > maxBytes) throw new InvalidDataException($"{path}: {length:N0} bytes; a file of this kind may have at most {maxBytes:N0}");
        return File.ReadAllBytes(path);
    }

    /// <summary>The length of the file <paramref name="path"/> leads to, through any symbolic links (0 for a device or a pipe).</summary>
    public static long LengthOf(string path)
    {
        var info = new FileInfo(path);
        if (info.LinkTarget is not null && info.ResolveLinkTarget(returnFinalTarget: true) is FileInfo target) info = target;
        return info.Exists ? info.Length : 0;
    }

    /// <summary>The UTF-8 text of <paramref name="path"/>, bounded as <see cref="ReadAllBytes"/>.</summary>
    public static string ReadAllText(string path, long maxBytes = ConfigBytes) => System.Text.Encoding.UTF8.GetString(ReadAllBytes(path, maxBytes));
}

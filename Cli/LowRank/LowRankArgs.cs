using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Layers.Text;

namespace LoraRuntime.Cli;

/// <summary>Loading and checks shared by merge, compress, extract and combine, with errors that name the option.</summary>
internal static class LowRankArgs
{
    /// <summary>
    /// Refuses an output directory, before any work is done and creating nothing: one that is (or lies under) a file,
    /// the file system's root, or one of the command's inputs (<paramref name="inputs"/>: a base model, an adapter), or
    /// a folder inside one — a run must never write over what it reads.
    /// </summary>
    public static void CheckOutputDirectory(string path, string option, params (string? Path, string Option)[] inputs)
    {
        string full;
        try
        {
            full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new UsageException($"{option}: '{path}' is not a valid directory path ({e.Message})");
        }
        if (Path.GetPathRoot(full) is { } root && string.Equals(Path.TrimEndingDirectorySeparator(root), full, StringComparison.Ordinal))
            throw new UsageException($"{option}: '{path}' is the root of the file system; choose a folder for the output");
        foreach (var (input, inputOption) in inputs)
        {
            if (input is null) continue;
            string source = Path.TrimEndingDirectorySeparator(Path.GetFullPath(input));
            if (full == source || full.StartsWith(source + Path.DirectorySeparatorChar, StringComparison.Ordinal))
                throw new UsageException($"{option}: '{path}' is {(full == source ? "" : "inside ")}the {inputOption} directory '{input}'; write the output elsewhere");
        }
        for (string? at = full; at is not null; at = Path.GetDirectoryName(at))
        {
            if (File.Exists(at)) throw new UsageException($"{option}: '{at}' is a file; expected '{path}' to be a directory");
            if (Directory.Exists(at)) return;
        }
    }

    /// <summary>A model directory of any layout (ours, GPT-2's, a Llama-family checkpoint) with its tokenizer, or a usage error naming <paramref name="option"/>.</summary>
    public static (GptModel Model, ITokenizer? Tokenizer, ModelLayout Layout) LoadAnyModel(Backend backend, string directory, string option, int maxBatch)
    {
        if (!Directory.Exists(directory)) throw new UsageException($"{option}: no directory '{directory}'");
        try
        {
            return ModelDirectory.Load(backend, directory, maxBatch);
        }
        catch (Exception e) when (e is ArgumentException or FileNotFoundException)
        {
            throw new UsageException($"{option}: {e.Message}");
        }
    }

    /// <summary>Loads a PEFT adapter onto <paramref name="lora"/> (module names as <paramref name="layout"/> gives them); one that does not fit the model is a usage error.</summary>
    public static LoraAdapter LoadAdapter(LoraModel lora, string directory, string option, string name = "adapter", ModelLayout layout = ModelLayout.LoraRuntime)
    {
        if (!Directory.Exists(directory)) throw new UsageException($"{option}: no directory '{directory}'");
        try
        {
            return PeftAdapterFiles.Load(lora, name, directory, layout);
        }
        catch (Exception e) when (e is ArgumentException or FileNotFoundException or InvalidDataException)
        {
            throw new UsageException($"{option}: the adapter in '{directory}' does not fit the model: {e.Message}");
        }
    }

    /// <summary>Comma-separated target names.</summary>
    public static string[] Targets(string? value) =>
        (value ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}

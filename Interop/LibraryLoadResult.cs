namespace LoraRuntime.Interop;

/// <summary>The outcome of looking for one native library.</summary>
/// <param name="Library">The short name (<see cref="CudaLibraryNames"/>).</param>
/// <param name="Handle">The loaded library, or 0 when none of the candidates loaded.</param>
/// <param name="LoadedFrom">The path (or bare file name, for the system loader) that loaded; null when none did.</param>
/// <param name="Tried">Every place looked at, in order, each with why it did not load (for <c>lora info</c>).</param>
public sealed record LibraryLoadResult(string Library, nint Handle, string? LoadedFrom, IReadOnlyList<string> Tried)
{
    /// <summary>True when the library is loaded.</summary>
    public bool IsLoaded => Handle != 0;

    /// <summary>"name not found; tried: …", the sentence an unavailable device reports.</summary>
    public string NotFoundMessage(IReadOnlyList<string> fileNames) =>
        $"{string.Join(" / ", fileNames)} not found; tried: {string.Join("; ", Tried)}";
}

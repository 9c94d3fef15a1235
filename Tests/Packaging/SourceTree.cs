using System.Diagnostics;
using System.Text;

namespace LoraRuntime.Tests.Packaging;

/// <summary>
/// A copy of the repository's library and CLI sources in a temporary folder, and the .NET SDK run on it. Packing and
/// publishing a copy leaves the checkout's bin/ and obj/ (and their restore state) exactly as the test run found them.
/// </summary>
internal sealed class SourceTree : IDisposable
{
    private static readonly string[] Folders = ["Interop", "Runtime", "Layers", "Cli", "native"];
    private static readonly string[] Files = ["Directory.Build.props", "README.md"];

    public SourceTree(string name)
    {
        Root = Path.Combine(Path.GetTempPath(), $"lora-{name}-{Environment.ProcessId}-{Guid.NewGuid():N}");
        string repository = RepositoryRoot();
        foreach (string file in Files) File.Copy(Path.Combine(repository, file), Path.Combine(Root, file).EnsureParent());
        foreach (string folder in Folders)
            if (Directory.Exists(Path.Combine(repository, folder))) CopySources(Path.Combine(repository, folder), Path.Combine(Root, folder));
    }

    /// <summary>The copy's root (the repository's layout).</summary>
    public string Root { get; }

    /// <summary>The checkout this test assembly was built from: the first folder above it that holds LoraRuntime.sln.</summary>
    public static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "LoraRuntime.sln"))) return dir.FullName;
        throw new InvalidOperationException($"no LoraRuntime.sln above {AppContext.BaseDirectory}");
    }

    /// <summary>Runs <paramref name="fileName"/> with <paramref name="arguments"/> in <paramref name="workingDirectory"/>; fails the test with its output unless it exits 0 in time.</summary>
    public static string Run(string fileName, IEnumerable<string> arguments, string workingDirectory, TimeSpan timeout,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo(fileName) { WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in arguments) start.ArgumentList.Add(a);
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        // The test host's own MSBuild settings must not leak into a nested build.
        foreach (string variable in new[] { "MSBuildExtensionsPath", "MSBuildSDKsPath", "MSBUILD_EXE_PATH", "DOTNET_HOST_PATH" })
            start.Environment.Remove(variable);
        if (environment is not null)
            foreach (var (k, v) in environment) start.Environment[k] = v;
        var output = new StringBuilder();
        using var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new Xunit.Sdk.XunitException($"{fileName} {string.Join(' ', arguments)} did not finish within {timeout}:\n{Tail(output)}");
        }
        process.WaitForExit(); // drain the output
        if (process.ExitCode != 0)
            throw new Xunit.Sdk.XunitException($"{fileName} {string.Join(' ', arguments)} exited with {process.ExitCode}:\n{Tail(output)}");
        lock (output) return output.ToString();
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
            // A temporary folder left behind is harmless.
        }
    }

    private static string Tail(StringBuilder output)
    {
        lock (output)
        {
            string text = output.ToString();
            return text.Length <= 6000 ? text : "…" + text[^6000..];
        }
    }

    private static void CopySources(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string file in Directory.EnumerateFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        foreach (string dir in Directory.EnumerateDirectories(from))
        {
            string name = Path.GetFileName(dir);
            if (name is "bin" or "obj") continue;
            CopySources(dir, Path.Combine(to, name));
        }
    }
}

internal static class PathExtensions
{
    /// <summary>Creates the folder <paramref name="path"/> lies in and returns the path.</summary>
    public static string EnsureParent(this string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        return path;
    }
}

using System.ComponentModel;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using LoraRuntime.Tests.Packaging;

namespace LoraRuntime.Tests.Support;

/// <summary>
/// Renders templates with @huggingface/jinja (transformers.js' Jinja, pinned in Tests/Support/jinja/package.json) under
/// node, the reference the C# interpreter is compared with. A batch of cases costs one node process.
/// </summary>
internal static class JinjaOracle
{
    private const string InstallHint = "run `npm ci --prefix Tests/Support/jinja` (needs Node.js 18 or newer on PATH)";

    /// <summary>A case: the template and the variables it renders with (JSON, as the C# side gets them too).</summary>
    public sealed record Case(string Template, JsonObject Context);

    /// <summary>The reference's rendering, or the message of the error it threw.</summary>
    public sealed record Rendering(string? Output, string? Error);

    /// <summary>Renders every case in one node run; fails (not skips) with what to install when node or the package is missing.</summary>
    public static IReadOnlyList<Rendering> Render(IReadOnlyList<Case> cases)
    {
        string folder = Path.Combine(SourceTree.RepositoryRoot(), "Tests", "Support", "jinja");
        if (!File.Exists(Path.Combine(folder, "node_modules", "@huggingface", "jinja", "package.json")))
            throw new Xunit.Sdk.XunitException($"@huggingface/jinja is not installed in {folder}: {InstallHint}");

        var input = new JsonArray(cases.Select(c => (JsonNode)new JsonObject
        {
            ["template"] = c.Template,
            ["context"] = c.Context.DeepClone(),
        }).ToArray());

        var start = new ProcessStartInfo("node")
        {
            WorkingDirectory = folder,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardInputEncoding = new UTF8Encoding(false),
            StandardOutputEncoding = Encoding.UTF8,
        };
        start.ArgumentList.Add("render.mjs");
        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (Win32Exception e)
        {
            throw new Xunit.Sdk.XunitException($"node could not be started ({e.Message}): {InstallHint}");
        }
        using (process)
        {
            var error = process.StandardError.ReadToEndAsync();
            var output = process.StandardOutput.ReadToEndAsync();
            process.StandardInput.Write(input.ToJsonString());
            process.StandardInput.Close();
            if (!process.WaitForExit(TimeSpan.FromMinutes(2)))
            {
                process.Kill(entireProcessTree: true);
                throw new Xunit.Sdk.XunitException("node render.mjs did not finish within 2 minutes");
            }
            if (process.ExitCode != 0)
                throw new Xunit.Sdk.XunitException($"node render.mjs exited with {process.ExitCode}: {error.Result}\n{InstallHint}");
            var results = JsonNode.Parse(output.Result)!.AsArray();
            if (results.Count != cases.Count) throw new Xunit.Sdk.XunitException($"node render.mjs returned {results.Count} results for {cases.Count} cases");
            return results.Select(r => new Rendering((string?)r!["output"], (string?)r["error"])).ToArray();
        }
    }

    /// <summary>The context's entries as the C# renderer takes its variables.</summary>
    public static Dictionary<string, object?> Variables(JsonObject context) =>
        context.ToDictionary(p => p.Key, p => (object?)p.Value?.DeepClone());

    /// <summary>Text for an assertion message: the string with its control characters visible.</summary>
    public static string Show(string? text) => text is null ? "(none)" : JsonSerializer.Serialize(text);
}

using System.Runtime.InteropServices;
using Xunit;

namespace LoraRuntime.Tests.Packaging;

/// <summary>
/// `lora` published with NativeAOT is one native binary that runs without .NET: it publishes with no AOT or trim
/// warning, and its info, train and generate commands run.
/// </summary>
public sealed class NativeAotTests
{
    private static readonly TimeSpan Step = TimeSpan.FromMinutes(8);

    [Fact]
    public void TheNativeBinaryPublishesWithoutWarningsAndRunsInfoTrainAndGenerate()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.OSArchitecture != Architecture.X64)
            Assert.Skip($"the NativeAOT check publishes for linux-x64; this is {RuntimeInformation.RuntimeIdentifier}");
        using var tree = new SourceTree("aot");
        string output = Path.Combine(tree.Root, "publish");
        string log = SourceTree.Run("dotnet",
            ["publish", Path.Combine(tree.Root, "Cli", "LoraRuntime.Cli.csproj"), "-c", "Release", "-r", "linux-x64", "-p:PublishAot=true", "-o", output],
            tree.Root, Step);
        Assert.DoesNotMatch(@"warning (IL|AOT)\d+", log);
        string lora = Path.Combine(output, "lora");
        Assert.True(File.Exists(lora), $"no binary at {lora}");
        Assert.False(File.Exists(Path.Combine(output, "lora.dll")), "a NativeAOT publish has no managed entry assembly");

        // Without .NET: no runtime on the path, no DOTNET_ROOT.
        var bare = new Dictionary<string, string> { ["PATH"] = "/usr/bin:/bin", ["DOTNET_ROOT"] = "" };
        string info = SourceTree.Run(lora, ["info"], tree.Root, TimeSpan.FromMinutes(1), bare);
        Assert.Contains("cpu", info);

        string data = Path.Combine(tree.Root, "corpus.txt");
        File.WriteAllText(data, string.Concat(Enumerable.Repeat("ROMEO: O, she doth teach the torches to burn bright!\n", 200)));
        string model = Path.Combine(tree.Root, "model");
        SourceTree.Run(lora, ["train", "--data", data, "--out", model, "--layers", "1", "--heads", "2", "--embd", "16", "--block", "16",
            "--batch", "2", "--iters", "4", "--eval-every", "4", "--eval-iters", "1"], tree.Root, TimeSpan.FromMinutes(2), bare);
        string text = SourceTree.Run(lora, ["generate", "--base", model, "--prompt", "ROMEO", "--tokens", "12", "--seed", "5"], tree.Root,
            TimeSpan.FromMinutes(1), bare);
        Assert.Contains("ROMEO", text);
    }
}

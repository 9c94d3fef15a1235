using System.Globalization;
using LoraRuntime.Hosting;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using Xunit;

namespace LoraRuntime.Tests.Packaging;

/// <summary>
/// `dotnet pack` gives packages a service can use: a consumer project that references LoraRuntime.Layers as a
/// package (not a project), from a local feed, builds and runs, and its logits equal the same program run here.
/// </summary>
public sealed class PackageConsumerTests
{
    private const string Version = "0.1.0";
    private static readonly TimeSpan Step = TimeSpan.FromMinutes(5);

    [Fact]
    public void AConsumerOfThePackedPackagesBuildsRunsAndAgreesWithTheLibraries()
    {
        using var tree = new SourceTree("pack");
        string feed = Path.Combine(tree.Root, "feed"), packages = Path.Combine(tree.Root, "packages"), consumer = Path.Combine(tree.Root, "consumer");
        // Our packages land in a cache of their own (never a stale copy from another run); everything else restores
        // from the machine's cache, or the registry.
        string globalPackages = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        var environment = new Dictionary<string, string> { ["NUGET_PACKAGES"] = packages };
        foreach (string project in new[] { "Runtime/LoraRuntime.csproj", "Layers/LoraRuntime.Layers.csproj" })
            SourceTree.Run("dotnet", ["pack", Path.Combine(tree.Root, project), "-c", "Release", "-o", feed, "-p:Version=" + Version], tree.Root, Step, environment);
        Assert.True(File.Exists(Path.Combine(feed, $"LoraRuntime.{Version}.nupkg")));
        Assert.True(File.Exists(Path.Combine(feed, $"LoraRuntime.{Version}.snupkg")));
        Assert.True(File.Exists(Path.Combine(feed, $"LoraRuntime.Layers.{Version}.nupkg")));

        Directory.CreateDirectory(consumer);
        File.WriteAllText(Path.Combine(consumer, "Consumer.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
                <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="LoraRuntime.Layers" Version="{Version}" />
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(consumer, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <add key="local" value="{feed}" />
              </packageSources>
              <fallbackPackageFolders>
                <add key="machine" value="{globalPackages}" />
              </fallbackPackageFolders>
            </configuration>
            """);
        File.Copy(Path.Combine(SourceTree.RepositoryRoot(), "Tests", "Packaging", "Consumer.cs.txt"), Path.Combine(consumer, "Program.cs"));
        // Project references must not sneak in: the consumer sees only the packages.
        Assert.DoesNotContain("ProjectReference", File.ReadAllText(Path.Combine(consumer, "Consumer.csproj")));
        string output = SourceTree.Run("dotnet", ["run", "-c", "Release"], consumer, Step, environment);
        Assert.True(Directory.Exists(Path.Combine(packages, "loraruntime.layers", Version)), "the consumer restored LoraRuntime.Layers from the local feed");

        var (logits, engine) = SameProgramInProcess();
        foreach (var (prefix, ours) in new[] { ("logits ", logits), ("engine ", engine) })
        {
            string line = output.Split('\n').Single(l => l.StartsWith(prefix, StringComparison.Ordinal)).Trim();
            float[] theirs = line[prefix.Length..].Split(' ').Select(s => float.Parse(s, CultureInfo.InvariantCulture)).ToArray();
            Assert.Equal(ours.Length, theirs.Length);
            for (int i = 0; i < ours.Length; i++)
                Assert.True(Math.Abs(ours[i] - theirs[i]) <= 1e-6f * (1 + Math.Abs(ours[i])), $"{prefix}{i}: {theirs[i]} from the package, {ours[i]} here");
        }
    }

    /// <summary>What Consumer.cs.txt computes, through the project references: the model's logits and the engine's.</summary>
    private static (float[] Logits, float[] Engine) SameProgramInProcess()
    {
        using var backend = Devices.Create("cpu");
        using var model = new GptModel(backend, new GptConfig(Vocabulary: 11, Layers: 2, Heads: 2, Channels: 16, BlockSize: 8), maxBatch: 1,
            training: false, trainParameters: false);
        model.Initialize(seed: 7);
        using var lora = new LoraModel(model);
        lora.AddAdapter("a", new LoraConfig { TargetModules = ["qkv", "fc"], Defaults = new LoraOptions { Rank = 4, Alpha = 8, Init = LoraInit.Random, Seed = 3 } });
        using var ids = backend.Allocate(DType.I32, new Shape(1, 8));
        backend.Upload(ids, new[] { 1, 4, 2, 9, 0, 3, 7, 5 });
        model.Forward(ids);
        var logits = new float[8 * 11];
        backend.Download(model.Logits, logits);
        using var engine = LoraEngine.Create(model, options: new EngineOptions { MaxBatch = 1 });
        var next = new float[11];
        engine.Forward(new[] { 1, 4, 2, 9, 0, 3, 7, 5 }, next);
        return (logits, next);
    }
}

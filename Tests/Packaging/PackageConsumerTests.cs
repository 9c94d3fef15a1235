using System.Globalization;
using LoraRuntime.Hosting;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Layers.Text;
using Xunit;

namespace LoraRuntime.Tests.Packaging;

/// <summary>
/// `dotnet pack` gives packages a service can use: a consumer project that references LoraRuntime.Layers as a
/// package (not a project), from a local feed, and uses only its public API, builds and runs, and what it prints (logits,
/// tokens, text, stats) equals the same program run here.
/// </summary>
public sealed class PackageConsumerTests
{
    private const string Version = "0.1.0";
    private static readonly TimeSpan Step = TimeSpan.FromMinutes(5);

    [Fact]
    public async Task AConsumerOfThePackedPackagesBuildsRunsAndAgreesWithTheLibraries()
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
        // Project references must not sneak in: the consumer sees only the packages, and of those only the public API.
        Assert.DoesNotContain("ProjectReference", File.ReadAllText(Path.Combine(consumer, "Consumer.csproj")));
        // What the consumer reads, written here with the internal APIs: an adapter for its random model, a model directory.
        string adapterDir = Path.Combine(tree.Root, "adapter"), modelDir = Path.Combine(tree.Root, "model");
        WriteInputs(adapterDir, modelDir);
        string output = SourceTree.Run("dotnet", ["run", "-c", "Release", "--", adapterDir, modelDir], consumer, Step, environment);
        Assert.True(Directory.Exists(Path.Combine(packages, "loraruntime.layers", Version)), "the consumer restored LoraRuntime.Layers from the local feed");

        var ours = await SameProgramInProcess(adapterDir, modelDir);
        var theirs = output.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0).ToArray();
        foreach (var (prefix, line) in ours)
        {
            string their = theirs.Single(l => l.StartsWith(prefix + " ", StringComparison.Ordinal));
            if (prefix is "base" or "adapter" or "text")
            {
                float[] a = Floats(line), b = Floats(their[(prefix.Length + 1)..]);
                Assert.Equal(a.Length, b.Length);
                for (int i = 0; i < a.Length; i++)
                    Assert.True(Math.Abs(a[i] - b[i]) <= 1e-6f * (1 + Math.Abs(a[i])), $"{prefix} {i}: {b[i]} from the package, {a[i]} here");
            }
            else Assert.Equal($"{prefix} {line}", their);
        }

        // The package's random engine is the model its seed initialises (GPT-2's recipe), not just the same as ours.
        using var backend = Devices.Create("cpu");
        using var model = new GptModel(backend, Shape, maxBatch: 1, training: false, trainParameters: false);
        model.Initialize(7, scaleResidual: true);
        using var idTensor = backend.Allocate(DType.I32, new Shape(1, Ids.Length));
        backend.Upload(idTensor, Ids);
        model.Forward(idTensor);
        var all = new float[Ids.Length * Shape.Vocabulary];
        backend.Download(model.Logits, all);
        var last = all.AsSpan((Ids.Length - 1) * Shape.Vocabulary).ToArray();
        var fromPackage = Floats(theirs.Single(l => l.StartsWith("base ", StringComparison.Ordinal))["base ".Length..]);
        for (int i = 0; i < last.Length; i++)
            Assert.True(Math.Abs(last[i] - fromPackage[i]) <= 1e-5f * (1 + Math.Abs(last[i])), $"base {i}: {fromPackage[i]} from the package, {last[i]} from the model");
    }

    private static readonly GptConfig Shape = new(Vocabulary: 11, Layers: 2, Heads: 2, Channels: 16, BlockSize: 8);
    private static readonly int[] Ids = [1, 4, 2, 9, 0, 3, 7, 5];

    private static float[] Floats(string line) => line.Split(' ').Select(s => float.Parse(s, CultureInfo.InvariantCulture)).ToArray();

    /// <summary>A random PEFT adapter for the consumer's random model (qkv and fc, R = 4), and a model directory of ours with an 11-character vocabulary.</summary>
    private static void WriteInputs(string adapterDir, string modelDir)
    {
        using var backend = Devices.Create("cpu");
        using var model = new GptModel(backend, Shape, maxBatch: 1, training: false, trainParameters: false);
        model.Initialize(7, scaleResidual: true);
        using (var lora = new LoraModel(model))
        {
            var config = new LoraConfig { TargetModules = ["qkv", "fc"], Defaults = new LoraOptions { Rank = 4, Alpha = 8, Init = LoraInit.Random, Seed = 3 } };
            PeftAdapterFiles.Save(lora.AddAdapter("support", config), config, adapterDir, "random");
        }
        model.Initialize(11);
        GptFiles.Save(model, new CharTokenizer("abcdefghijk"), modelDir);
    }

    /// <summary>What Consumer.cs.txt prints, line by line (prefix, rest), through the project references.</summary>
    private static async Task<List<(string Prefix, string Line)>> SameProgramInProcess(string adapterDir, string modelDir)
    {
        static string Format(float[] values) => string.Join(' ', values.Select(x => x.ToString("R", CultureInfo.InvariantCulture)));
        var lines = new List<(string, string)>();
        int[] ids = Ids;
        using (var engine = LoraEngine.CreateRandom(Shape, seed: 7, new EngineOptions { Device = "cpu", MaxBatch = 2, MaxStepTokens = 8, MaxRank = 4 }))
        {
            var logits = new float[engine.Vocabulary];
            engine.Forward(ids, logits);
            lines.Add(("base", Format(logits)));
            var info = engine.LoadAdapter("support", adapterDir);
            engine.Forward(ids, logits, adapter: "support", scale: 0.5f);
            lines.Add(("adapter", Format(logits)));
            var reply = await engine.GenerateAsync(ids[..4], new GenerationOptions { Adapter = "support", Scale = 2f, MaxTokens = 3 }, TestContext.Current.CancellationToken);
            lines.Add(("generated", string.Join(' ', reply.Tokens) + " " + reply.FinishReason));
            var stats = engine.Stats;
            lines.Add(("stats", $"{stats.Device} {info.Modules} {info.MaxRank} {stats.Forward.Count} {stats.Generation.Requests} {stats.Adapters.Loaded} {stats.Pool.BytesInUse > 0}"));
            lines.Add(("unloaded", $"{engine.UnloadAdapter("support")} {engine.Adapters.Count}"));
        }
        using (var engine = LoraEngine.Load(modelDir, new EngineOptions { Device = "cpu", MaxBatch = 1 }))
        {
            lines.Add(("text", Format(engine.Forward("badge"))));
            var reply = await engine.GenerateAsync("cab", new GenerationOptions { MaxTokens = 4 }, TestContext.Current.CancellationToken);
            lines.Add(("reply", $"{engine.HasTokenizer} {string.Join(',', engine.Encode("cab"))} [{reply.Text}] [{engine.Decode(reply.Tokens)}]"));
        }
        return lines;
    }
}

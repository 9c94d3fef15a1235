using System.Reflection;
using System.Xml.Linq;
using LoraRuntime.Hosting;
using Xunit;

namespace LoraRuntime.Tests.Packaging;

/// <summary>
/// The LoraRuntime.Layers package's public surface is the embedding API and the records its members take and return;
/// everything else is internal. Its XML docs, which a consumer reads, point only at what the consumer can see.
/// (Consumer.cs.txt, built against the packed packages, shows the API is enough for a service.)
/// </summary>
public sealed class PublicSurfaceTests
{
    private static readonly Assembly Layers = typeof(LoraEngine).Assembly;

    private static readonly string[] Expected =
    [
        "LoraRuntime.Hosting.AdapterInfo",
        "LoraRuntime.Hosting.EngineOptions",
        "LoraRuntime.Hosting.EngineStats",
        "LoraRuntime.Hosting.GenerationOptions",
        "LoraRuntime.Hosting.GenerationResult",
        "LoraRuntime.Hosting.LatencyStats",
        "LoraRuntime.Hosting.LoraChatClient",
        "LoraRuntime.Hosting.LoraEngine",
        "LoraRuntime.Layers.GptConfig",
        "LoraRuntime.Layers.MlpKind",
        "LoraRuntime.Layers.ModelLayout",
        "LoraRuntime.Layers.NormKind",
        "LoraRuntime.Layers.RopeScaling",
        "LoraRuntime.Layers.RotaryOptions",
        "LoraRuntime.Layers.Serving.AdapterBankStats",
        "LoraRuntime.Layers.Serving.MetricsSnapshot",
        "LoraRuntime.Layers.WeightStorage",
        "Microsoft.Extensions.DependencyInjection.LoraRuntimeServiceCollectionExtensions",
    ];

    [Fact]
    public void The_layers_assembly_exports_the_engine_and_its_records_only()
    {
        var exported = Layers.GetExportedTypes().Select(t => t.FullName!).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(Expected, exported);
    }

    [Fact]
    public void The_engine_takes_no_model_or_tokenizer_type()
    {
        // What a service calls to make an engine: a directory, or a shape and a seed.
        var factories = typeof(LoraEngine).GetMethods(BindingFlags.Public | BindingFlags.Static).Select(m => m.Name).Order(StringComparer.Ordinal);
        Assert.Equal(["CreateRandom", "Load"], factories);
        var parameters = typeof(LoraEngine).GetMembers(BindingFlags.Public | BindingFlags.Static | BindingFlags.Instance)
            .OfType<MethodBase>().SelectMany(m => m.GetParameters().Select(p => p.ParameterType));
        Assert.All(parameters, t => Assert.True(Visible(t), $"{t} is not public"));
    }

    [Fact]
    public void Public_docs_refer_only_to_public_types_and_members()
    {
        string file = Path.ChangeExtension(Layers.Location, ".xml");
        Assert.True(File.Exists(file), $"{file}: the documentation file is built beside the assembly");
        var problems = new List<string>();
        int checkedMembers = 0;
        foreach (var member in XDocument.Load(file).Descendants("member"))
        {
            string id = (string)member.Attribute("name")!;
            if (!IsPublic(id)) continue;
            checkedMembers++;
            foreach (var cref in member.Descendants().Attributes("cref").Select(a => a.Value))
                if (cref.Length > 2 && cref[1] == ':' && !IsPublic(cref) && Layers.GetType(DeclaringType(cref)) is not null)
                    problems.Add($"{id} refers to {cref}");
        }
        Assert.True(checkedMembers >= Expected.Length, $"only {checkedMembers} public members documented");
        Assert.True(problems.Count == 0, "public docs that refer to what a consumer cannot see:\n" + string.Join("\n", problems));
    }

    private static bool Visible(Type t) =>
        t.HasElementType ? Visible(t.GetElementType()!) : t.IsVisible && t.GetGenericArguments().All(Visible);

    /// <summary>The type that a documentation id ("T:A.B", "M:A.B.C(System.Int32)", "P:A.B.C") names or declares a member of.</summary>
    private static string DeclaringType(string id)
    {
        string name = id[2..];
        int parenthesis = name.IndexOf('(', StringComparison.Ordinal);
        if (parenthesis >= 0) name = name[..parenthesis];
        return id[0] == 'T' ? name : name[..name.LastIndexOf('.')];
    }

    /// <summary>
    /// True when the documentation id names a public type of Layers, or a member of one that is public or protected
    /// (by name: some overload of it). Ids outside Layers (System, LoraRuntime) are not judged here.
    /// </summary>
    private static bool IsPublic(string id)
    {
        var type = Layers.GetType(DeclaringType(id));
        if (type is null || !type.IsVisible) return false;
        if (id[0] == 'T') return true;
        string name = id[2..];
        int parenthesis = name.IndexOf('(', StringComparison.Ordinal);
        if (parenthesis >= 0) name = name[..parenthesis];
        name = name[(name.LastIndexOf('.') + 1)..].Replace('#', '.'); // "#ctor" is ".ctor"
        int generic = name.IndexOf("``", StringComparison.Ordinal);
        if (generic >= 0) name = name[..generic];
        const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        return type.GetMember(name, all).Any(m => m switch
        {
            MethodBase b => b.IsPublic || b.IsFamily || b.IsFamilyOrAssembly,
            PropertyInfo p => p.GetAccessors(nonPublic: true).Any(a => a.IsPublic || a.IsFamily || a.IsFamilyOrAssembly),
            FieldInfo f => f.IsPublic || f.IsFamily || f.IsFamilyOrAssembly,
            EventInfo e => e.AddMethod is { } add && (add.IsPublic || add.IsFamily),
            _ => false,
        });
    }
}

using LoraRuntime.Cpu;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Layers.Serving;

namespace LoraRuntime.Tests.Serving;

/// <summary>
/// A tiny GPT with three PEFT adapters of different ranks and targets saved to a temporary directory, the served model
/// (no adapters attached) and a reference model per adapter that runs the training layers' non-cached forward.
/// </summary>
internal sealed class ServingFixture : IDisposable
{
    public static readonly GptConfig Config = new(Vocabulary: 13, Layers: 2, Heads: 2, Channels: 16, BlockSize: 24);
    public const ulong ModelSeed = 5;

    /// <summary>Adapter name → its PEFT configuration.</summary>
    public static readonly IReadOnlyDictionary<string, LoraConfig> Adapters = new Dictionary<string, LoraConfig>
    {
        ["qv"] = new() { TargetModules = ["q", "v"], Defaults = new LoraOptions { Rank = 2, Alpha = 4, Init = LoraInit.Random, Seed = 1 } },
        ["all"] = new() { TargetModules = [LoraConfig.AllLinear], Defaults = new LoraOptions { Rank = 4, Alpha = 6, UseRsLora = true, Init = LoraInit.Random, Seed = 2 } },
        ["mlp"] = new()
        {
            TargetModules = ["fc", "proj", "k"], Defaults = new LoraOptions { Rank = 1, Alpha = 3, Init = LoraInit.Random, Seed = 3 },
            RankPattern = new Dictionary<string, int> { ["blocks.1.mlp.fc"] = 3 },
        },
    };

    public ServingFixture()
    {
        Backend = new CpuBackend();
        Root = Path.Combine(Path.GetTempPath(), "lora-serve-" + Guid.NewGuid().ToString("N"));
        foreach (var (name, config) in Adapters)
        {
            using var model = NewModel();
            using var lora = new LoraModel(model);
            var adapter = lora.AddAdapter(name, config);
            // Random B is large for a 16-channel model: shrink it so the adapters perturb rather than swamp the base.
            foreach (var w in adapter.Modules) Backend.Scale(w.B.Value, w.B.Value, 0.3f);
            PeftAdapterFiles.Save(adapter, config, AdapterDirectory(name), "tiny");
        }
        Served = NewModel();
        Layout = new ServingLayout(Served);
    }

    public CpuBackend Backend { get; }
    public string Root { get; }
    public GptModel Served { get; }
    public ServingLayout Layout { get; }

    public string AdapterDirectory(string name) => Path.Combine(Root, name);

    public GptModel NewModel(int maxBatch = 1)
    {
        var model = new GptModel(Backend, Config, maxBatch, training: false, trainParameters: false);
        model.Initialize(ModelSeed);
        // Non-trivial layer norms and biases, so that every parameter takes part in the comparison.
        foreach (var p in model.Parameters.Parameters)
            if (p.Name.EndsWith(".bias", StringComparison.Ordinal) || p.Name.Contains("ln", StringComparison.Ordinal))
                p.Value.CopyFrom(Support.Reference.Random((int)p.Shape.Length, p.Name.Length + 17).Select(v => (p.Name.EndsWith(".weight") ? 1 : 0) + 0.2f * v).ToArray());
        return model;
    }

    /// <summary>The non-cached forward of the training layers with <paramref name="adapter"/> (or none) loaded from its PEFT files.</summary>
    public ReferenceRunner Reference(string? adapter) => new(this, adapter);

    public void Dispose()
    {
        Served.Dispose();
        Backend.Dispose();
        if (Directory.Exists(Root)) Directory.Delete(Root, recursive: true);
    }
}

/// <summary>A GptModel (with a PEFT adapter loaded through LoraModel) that returns the last position's logits of a whole sequence.</summary>
internal sealed class ReferenceRunner : IDisposable
{
    private readonly ServingFixture _f;
    private readonly GptModel _model;
    private readonly LoraModel _lora;

    public ReferenceRunner(ServingFixture f, string? adapter)
    {
        _f = f;
        _model = f.NewModel();
        _lora = new LoraModel(_model);
        if (adapter is not null) PeftAdapterFiles.Load(_lora, adapter, f.AdapterDirectory(adapter)).Training = false;
    }

    public float[] LastLogits(IReadOnlyList<int> sequence)
    {
        int t = sequence.Count, v = ServingFixture.Config.Vocabulary;
        using var ids = _f.Backend.Allocate(DType.I32, new Shape(1, t));
        ids.CopyFrom(sequence.ToArray());
        _model.Forward(ids);
        return _model.Logits.ToArray().AsSpan((t - 1) * v, v).ToArray();
    }

    public void Dispose()
    {
        _lora.Dispose();
        _model.Dispose();
    }
}

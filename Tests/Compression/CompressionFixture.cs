using LoraRuntime.Cli;
using LoraRuntime.Cpu;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Text;
using Reference = LoraRuntime.Tests.Support.Reference;

namespace LoraRuntime.Tests.Compression;

/// <summary>Tiny models on disk and in-process CLI runs for the low-rank tools' tests.</summary>
internal sealed class CompressionFixture : IDisposable
{
    /// <summary>V = 7, one block, C = 16: fc is [64, 16], qkv [48, 16].</summary>
    public static readonly GptConfig Tiny = new(Vocabulary: 7, Layers: 1, Heads: 2, Channels: 16, BlockSize: 6);
    public static readonly CharTokenizer Tokenizer = new("abcdefg");

    public CpuBackend Backend { get; } = new();
    public string Dir { get; } = Path.Combine(Path.GetTempPath(), "lora-lowrank-" + Guid.NewGuid().ToString("N"));
    public StringWriter Out { get; } = new();
    public StringWriter Error { get; } = new();

    public CompressionFixture() => Directory.CreateDirectory(Dir);

    public string PathOf(string name) => Path.Combine(Dir, name);

    public int Run(params string[] args) => LoraApp.Run(args, Terminal.ForWriters(Out, Error));

    /// <summary>An inference model with random weights (seeded).</summary>
    public GptModel Model(ulong seed = 11, GptConfig? config = null)
    {
        var model = new GptModel(Backend, config ?? Tiny, maxBatch: 2, training: false, trainParameters: false);
        model.Initialize(seed);
        // Non-zero biases and layer norms, so that keeping them is tested too.
        foreach (var p in model.Parameters.Parameters.Where(p => p.Name.EndsWith(".bias", StringComparison.Ordinal)))
            p.Value.CopyFrom(Reference.Random((int)p.Shape.Length, p.Name.Length).Select(v => 0.1f * v).ToArray());
        return model;
    }

    /// <summary>Logits [B, T, V] for a fixed batch of ids.</summary>
    public float[] Logits(GptModel model)
    {
        using var ids = Backend.Allocate(DType.I32, new Shape(2, 5));
        ids.CopyFrom([1, 5, 2, 6, 0, 3, 3, 4, 0, 1]);
        model.Forward(ids);
        return model.Logits.ToArray();
    }

    /// <summary>A rank-<paramref name="rank"/> matrix [m, n] = X·Y with entries of X, Y uniform in ±scale.</summary>
    public static double[] LowRank(int m, int n, int rank, int seed, double scale = 0.3)
    {
        float[] x = Reference.Random(m * rank, seed), y = Reference.Random(rank * n, seed + 1);
        var w = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int k = 0; k < rank; k++)
                for (int j = 0; j < n; j++) w[i * n + j] += scale * x[i * rank + k] * scale * y[k * n + j];
        return w;
    }

    public static float[] ToFloat(double[] x) => Array.ConvertAll(x, v => (float)v);

    public string Save(GptModel model, string name)
    {
        string dir = PathOf(name);
        GptFiles.Save(model, Tokenizer, dir);
        return dir;
    }

    public void Dispose()
    {
        Backend.Dispose();
        if (Directory.Exists(Dir)) Directory.Delete(Dir, recursive: true);
    }
}

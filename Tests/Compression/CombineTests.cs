using LoraRuntime.Layers.Adapters;
using LoraRuntime.Tests.Linalg;
using Xunit;
using Reference = LoraRuntime.Tests.Support.Reference;

namespace LoraRuntime.Tests.Compression;

/// <summary><c>lora combine</c> against the float64 math of PEFT's add_weighted_adapter for linear, cat and svd.</summary>
public sealed class CombineTests : IDisposable
{
    private readonly CompressionFixture _f = new();

    public void Dispose() => _f.Dispose();

    /// <summary>Writes a random adapter and reads it back as plain tensors.</summary>
    private AdapterTensors Adapter(string name, string[] targets, int rank, float alpha, bool rsLora, ulong seed)
    {
        var config = new LoraConfig
        {
            TargetModules = targets,
            Defaults = new LoraOptions { Rank = rank, Alpha = alpha, UseRsLora = rsLora, Init = LoraInit.Random, Seed = seed },
        };
        using var model = _f.Model();
        using var lora = new LoraModel(model);
        PeftAdapterFiles.Save(lora.AddAdapter(name, config), config, _f.PathOf(name), "tiny");
        return PeftAdapterTensors.Read(_f.PathOf(name));
    }

    private static double Scale(AdapterTensors a) => a.Config.Defaults.Scale;

    /// <summary>Σ c·B·A in float64 over the (module, c) pairs.</summary>
    private static double[] Delta(IEnumerable<(AdapterModuleTensors M, double C)> terms, int outFeatures, int inFeatures)
    {
        var d = new double[outFeatures * inFeatures];
        foreach (var (m, c) in terms)
            for (int i = 0; i < outFeatures; i++)
                for (int j = 0; j < inFeatures; j++)
                {
                    double s = 0;
                    for (int r = 0; r < m.Rank; r++) s += (double)m.B[i * m.Rank + r] * m.A[r * inFeatures + j];
                    d[i * inFeatures + j] += c * s;
                }
        return d;
    }

    private static float[] Product(AdapterModuleTensors m) =>
        Delta([(m, 1.0)], m.OutFeatures, m.InFeatures).Select(v => (float)v).ToArray();

    [Fact]
    public void Linear_sums_A_and_B_with_the_roots_of_weight_times_scale()
    {
        var a1 = Adapter("a1", ["q", "fc"], 2, 4, rsLora: false, seed: 1);
        var a2 = Adapter("a2", ["q", "v"], 2, 3, rsLora: true, seed: 2);
        Assert.Equal(0, _f.Run("combine", "--adapter", _f.PathOf("a1") + ":0.7", "--adapter", _f.PathOf("a2") + ":-0.4", "--method", "linear", "--out", _f.PathOf("c")));
        var c = PeftAdapterTensors.Read(_f.PathOf("c"));
        Assert.Equal((2, 2f, false), (c.Config.Defaults.Rank, c.Config.Defaults.Alpha, c.Config.Defaults.UseRsLora));
        Assert.Equal(["q", "fc", "v"], c.Config.TargetModules);
        foreach (var m in c.Modules)
        {
            var expectedA = new double[m.A.Length];
            var expectedB = new double[m.B.Length];
            foreach (var (adapter, weight) in new[] { (a1, 0.7), (a2, -0.4) })
            {
                if (adapter.Modules.FirstOrDefault(x => x.Path == m.Path) is not { } source) continue;
                double cw = weight * Scale(adapter), root = Math.Sqrt(Math.Abs(cw));
                for (int i = 0; i < expectedA.Length; i++) expectedA[i] += Math.Sign(cw) * root * source.A[i];
                for (int i = 0; i < expectedB.Length; i++) expectedB[i] += root * source.B[i];
            }
            Assert.True(Reference.RelativeError(m.A, expectedA) <= 1e-6, $"{m.Path}: A");
            Assert.True(Reference.RelativeError(m.B, expectedB) <= 1e-6, $"{m.Path}: B");
        }
        Assert.Equal(3, c.Modules.Count);
        // One adapter at weight 1 comes back as itself (linear whatever the method asked, as PEFT does).
        Assert.Equal(0, _f.Run("combine", "--adapter", _f.PathOf("a2"), "--method", "svd", "--rank", "4", "--out", _f.PathOf("same")));
        var same = PeftAdapterTensors.Read(_f.PathOf("same"));
        Assert.Equal(2, same.Config.Defaults.Rank);
        foreach (var m in same.Modules)
            Assert.True(Reference.RelativeError(Product(m), Delta([(a2.Modules.Single(x => x.Path == m.Path), Scale(a2))], m.OutFeatures, m.InFeatures)) <= 1e-6);
    }

    [Fact]
    public void Cat_stacks_weighted_A_and_B_so_the_delta_is_the_weighted_sum()
    {
        var a1 = Adapter("a1", ["q", "fc"], 2, 4, rsLora: false, seed: 1);
        var a3 = Adapter("a3", ["q", "v"], 3, 5, rsLora: false, seed: 3);
        Assert.Equal(0, _f.Run("combine", "--adapter", _f.PathOf("a1") + ":0.7", "--adapter", _f.PathOf("a3") + ":-1.5", "--method", "cat", "--out", _f.PathOf("c")));
        var c = PeftAdapterTensors.Read(_f.PathOf("c"));
        Assert.Equal((5, 5f), (c.Config.Defaults.Rank, c.Config.Defaults.Alpha));
        foreach (var m in c.Modules)
        {
            var present = new[] { (a1, 0.7), (a3, -1.5) }.Select(p => (M: p.Item1.Modules.FirstOrDefault(x => x.Path == m.Path), C: p.Item2 * Scale(p.Item1)))
                .Where(p => p.M is not null).ToList();
            // A = [c₁A₁; c₂A₂; 0], B = [B₁ B₂ 0]: the present adapters first, zeros after.
            var expectedA = new double[m.A.Length];
            var expectedB = new double[m.B.Length];
            int row = 0;
            foreach (var (source, cw) in present)
            {
                for (int r = 0; r < source!.Rank; r++)
                    for (int j = 0; j < m.InFeatures; j++) expectedA[(row + r) * m.InFeatures + j] = cw * source.A[r * m.InFeatures + j];
                for (int i = 0; i < m.OutFeatures; i++)
                    for (int r = 0; r < source.Rank; r++) expectedB[i * 5 + row + r] = source.B[i * source.Rank + r];
                row += source.Rank;
            }
            Assert.True(Reference.RelativeError(m.A, expectedA) <= 1e-6, $"{m.Path}: A");
            Assert.Equal(expectedB, Reference.ToDouble(m.B));
            // With the new scale 1 the delta is Σ wᵢ·sᵢ·Bᵢ·Aᵢ exactly.
            Assert.True(Reference.RelativeError(Product(m), Delta(present.Select(p => (p.M!, p.C)), m.OutFeatures, m.InFeatures)) <= 1e-6, $"{m.Path}: delta");
        }
        // The combined adapter is an ordinary PEFT adapter for the model.
        using var model = _f.Model();
        using var lora = new LoraModel(model);
        Assert.Equal(3, PeftAdapterFiles.Load(lora, "c", _f.PathOf("c")).Modules.Count);
    }

    [Fact]
    public void Svd_truncates_the_weighted_delta_by_its_svd()
    {
        var a1 = Adapter("a1", ["q", "fc"], 2, 4, rsLora: false, seed: 1);
        var a3 = Adapter("a3", ["q", "v"], 3, 5, rsLora: true, seed: 3);
        (AdapterTensors, double)[] inputs = [(a1, 0.7), (a3, 1.3)];
        double[] DeltaOf(AdapterModuleTensors m) => Delta(inputs
            .Select(p => (M: p.Item1.Modules.FirstOrDefault(x => x.Path == m.Path), C: p.Item2 * Scale(p.Item1)))
            .Where(p => p.M is not null).Select(p => (p.M!, p.C)), m.OutFeatures, m.InFeatures);
        // At rank 5 = 2 + 3 nothing is truncated: B·A is the delta.
        Assert.Equal(0, _f.Run("combine", "--adapter", _f.PathOf("a1") + ":0.7", "--adapter", _f.PathOf("a3") + ":1.3", "--method", "svd", "--rank", "5", "--out", _f.PathOf("full")));
        foreach (var m in PeftAdapterTensors.Read(_f.PathOf("full")).Modules)
            Assert.True(Reference.RelativeError(Product(m), DeltaOf(m)) <= 1e-5, $"{m.Path}: rank-5 svd differs from the delta");
        // At the default rank max(2, 3) = 3, the error is the tail of the delta's spectrum and A has orthonormal rows.
        Assert.Equal(0, _f.Run("combine", "--adapter", _f.PathOf("a1") + ":0.7", "--adapter", _f.PathOf("a3") + ":1.3", "--method", "svd", "--out", _f.PathOf("c")));
        var c = PeftAdapterTensors.Read(_f.PathOf("c"));
        Assert.Equal((3, 3f, false), (c.Config.Defaults.Rank, c.Config.Defaults.Alpha, c.Config.Defaults.UseRsLora));
        foreach (var m in c.Modules)
        {
            double[] delta = DeltaOf(m), sigma = LinalgReference.SingularValues(delta, m.OutFeatures, m.InFeatures);
            float[] p = Product(m);
            double error = 0;
            for (int i = 0; i < p.Length; i++) error += (p[i] - delta[i]) * (p[i] - delta[i]);
            double tail = sigma.Skip(3).Sum(s => s * s), total = sigma.Sum(s => s * s);
            Assert.True(Math.Abs(error - tail) <= 1e-5 * total, $"{m.Path}: ‖ΔW − BA‖² = {error:E3}, spectrum tail {tail:E3}");
            for (int r = 0; r < 3; r++)
                for (int q = 0; q < 3; q++)
                {
                    double dot = 0;
                    for (int j = 0; j < m.InFeatures; j++) dot += (double)m.A[r * m.InFeatures + j] * m.A[q * m.InFeatures + j];
                    Assert.True(Math.Abs(dot - (r == q ? 1 : 0)) <= 1e-5, $"{m.Path}: rows {r}, {q} of A");
                }
        }
    }

    [Fact]
    public void What_PEFT_refuses_is_a_clear_error_and_writes_nothing()
    {
        Adapter("a1", ["q"], 2, 4, rsLora: false, seed: 1);
        Adapter("a3", ["q"], 3, 5, rsLora: false, seed: 3);
        string outDir = _f.PathOf("never");
        Assert.Equal(2, _f.Run("combine", "--adapter", _f.PathOf("a1"), "--adapter", _f.PathOf("a3"), "--method", "linear", "--out", outDir));
        Assert.Contains("one rank", _f.Error.ToString());
        Assert.Equal(2, _f.Run("combine", "--adapter", _f.PathOf("a1"), "--adapter", _f.PathOf("a3"), "--method", "svd", "--rank", "17", "--out", outDir));
        Assert.Contains("min(out, in) = 16", _f.Error.ToString());
        Assert.Equal(2, _f.Run("combine", "--adapter", _f.PathOf("a1"), "--adapter", _f.PathOf("a3"), "--method", "ties", "--out", outDir));
        Assert.Equal(2, _f.Run("combine", "--adapter", _f.PathOf("a1"), "--adapter", _f.PathOf("a3"), "--method", "cat", "--rank", "2", "--out", outDir));
        Assert.Contains("only chosen by the svd method", _f.Error.ToString());
        Assert.False(Directory.Exists(outDir));
    }
}

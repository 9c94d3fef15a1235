using LoraRuntime.Cpu;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Layers;

/// <summary>PiSSA (exact and randomized) and OLoRA: residual + s·B·A is the original weight, and the adapter spans the right directions.</summary>
public sealed class WeightInitializationTests : IDisposable
{
    private static readonly GptConfig Tiny = new(Vocabulary: 9, Layers: 1, Heads: 2, Channels: 16, BlockSize: 6);
    private readonly CpuBackend _cpu = new();

    public void Dispose() => _cpu.Dispose();

    private GptModel Model()
    {
        var model = new GptModel(_cpu, Tiny, maxBatch: 1, training: true, trainParameters: false);
        model.Initialize(21);
        return model;
    }

    [Theory]
    [InlineData(nameof(LoraInit.Pissa), "qkv")]
    [InlineData(nameof(LoraInit.Pissa), "q")]
    [InlineData(nameof(LoraInit.PissaRandomized), "fc")]
    [InlineData(nameof(LoraInit.Olora), "proj")]
    [InlineData(nameof(LoraInit.Olora), "v")]
    public void ResidualPlusAdapterIsTheOriginalWeightAndOutputsAreUnchanged(string initName, string target)
    {
        var init = Enum.Parse<LoraInit>(initName); // a theory's parameters are public; LoraInit is internal
        using var model = Model();
        using var ids = _cpu.Allocate(DType.I32, new Shape(1, 6));
        ids.CopyFrom([1, 4, 2, 8, 0, 3]);
        model.Forward(ids);
        var before = model.Logits.ToArray();
        var weights = model.Parameters.Values.ToArray();
        using var lora = new LoraModel(model);
        var options = new LoraOptions { Rank = 4, Alpha = 8, Init = init, Seed = 5 };
        var adapter = lora.AddAdapter("a", new LoraConfig { TargetModules = [target], Defaults = options });
        var w = adapter.Modules[0];
        var baseWeight = w.Module.Base.Weight;
        int inF = w.Module.InFeatures, outF = w.Module.OutFeatures, offset = w.Module.OutputOffset;
        var residual = baseWeight.Value.ToArray();
        var a = w.A.Value.ToArray();
        var b = w.B.Value.ToArray();
        var original = weights.AsSpan((int)baseWeight.Offset, (int)baseWeight.Shape.Length).ToArray();
        // residual + s·B·A reproduces the original slice; the rest of the weight is untouched.
        var rebuilt = new double[original.Length];
        for (int i = 0; i < original.Length; i++) rebuilt[i] = residual[i];
        for (int i = 0; i < outF; i++)
            for (int j = 0; j < inF; j++)
            {
                double sum = 0;
                for (int r = 0; r < 4; r++) sum += (double)b[i * 4 + r] * a[r * inF + j];
                rebuilt[(offset + i) * inF + j] += w.Scale * sum;
            }
        Assert.True(Reference.RelativeError(original, rebuilt) <= 1e-5);
        for (int i = 0; i < original.Length; i++)
            if (i / inF < offset || i / inF >= offset + outF) Assert.Equal(original[i], residual[i]);
        model.Forward(ids);
        Assert.True(Reference.RelativeError(model.Logits.ToArray(), Reference.ToDouble(before)) <= 1e-5);
        if (init == LoraInit.Olora)
        {
            // B = Q[:, :R] has orthonormal columns.
            for (int p = 0; p < 4; p++)
                for (int q = 0; q < 4; q++)
                {
                    double dot = 0;
                    for (int i = 0; i < outF; i++) dot += (double)b[i * 4 + p] * b[i * 4 + q];
                    Assert.Equal(p == q ? 1.0 : 0.0, dot, 5);
                }
        }
        else
        {
            // s·B·A is the best rank-R approximation: the residual's norm is the tail of the spectrum.
            using var slice = _cpu.FromArray(original.AsSpan(offset * inF, outF * inF), outF, inF);
            int k = Math.Min(outF, inF);
            using var u = _cpu.Allocate(outF, k);
            using var s = _cpu.Allocate(k);
            using var vt = _cpu.Allocate(k, inF);
            _cpu.Svd(u, s, vt, slice);
            var sigma = s.ToArray();
            double tail = Math.Sqrt(sigma[4..].Sum(x => (double)x * x));
            double res = Math.Sqrt(residual.AsSpan(offset * inF, outF * inF).ToArray().Sum(x => (double)x * x));
            Assert.True(res <= tail * (init == LoraInit.Pissa ? 1.0001 : 1.05), $"residual norm {res} against the optimal {tail}");
        }
    }
}

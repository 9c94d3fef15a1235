using LoraRuntime.Cpu;
using LoraRuntime.IO;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Tests.Llama;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Quantization;

/// <summary>
/// LoRA adapters in llama.cpp's GGUF layout: written with each module's scale folded into B (alpha 0), q and k's B rows
/// in its interleaved rotary order, and read back into the same logits; a file of another alpha scales by alpha / R;
/// what llama.cpp cannot hold (DoRA, a whole fused projection) is refused by name.
/// </summary>
public sealed class GgufAdapterFileTests : IDisposable
{
    private static readonly LlamaShape Shape = new(40, 64, 96, 2, 4, 2, 16, 1e-5, false, false, false, true, 10000);
    private readonly CpuBackend _backend = new();
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "lora-gguf-adapter-" + Guid.NewGuid().ToString("N"));

    public GgufAdapterFileTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        _backend.Dispose();
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public void An_adapter_written_as_gguf_reads_back_into_the_same_logits()
    {
        using var model = new GptModel(_backend, LlamaModelTests.Config(Shape, 16), 1, training: false, trainParameters: false);
        model.Initialize(3);
        int[] tokens = [1, 9, 22, 4, 31, 17];
        float[] withAdapter;
        string path = Path.Combine(_dir, "a.gguf");
        using (var lora = new LoraModel(model))
        {
            var adapter = lora.AddAdapter("a", new LoraConfig
            {
                TargetModules = ["q", "k", "v", "o", "down"], Defaults = new LoraOptions { Rank = 4, Alpha = 8, Init = LoraInit.Random, Seed = 2 },
                RankPattern = new Dictionary<string, int> { ["blocks.1.mlp.down"] = 2 }, AlphaPattern = new Dictionary<string, float> { ["blocks.0.attn.v"] = 3 },
            });
            adapter.Training = false;
            foreach (var w in adapter.Modules) _backend.Scale(w.B.Value, w.B.Value, 0.3f);
            withAdapter = Logits(model, tokens);
            GgufAdapterFile.Write(adapter, model, path);
        }
        // A fresh copy of the base (the same seed) takes the adapter read back.
        using var fresh = new GptModel(_backend, LlamaModelTests.Config(Shape, 16), 1, training: false, trainParameters: false);
        fresh.Initialize(3);
        var bare = Logits(fresh, tokens);
        Assert.True(Reference.RelativeError(bare, Reference.ToDouble(withAdapter)) > 1e-3); // the adapter matters

        using (var gguf = GgufReader.Open(path))
        {
            Assert.Equal("adapter", gguf.Metadata["general.type"].AsString());
            Assert.Equal(0.0, gguf.Metadata["adapter.lora.alpha"].AsDouble());
            Assert.True(gguf.TryGetTensor("blk.0.attn_q.weight.lora_a", out var a));
            Assert.Equal([64L, 4], a.Dimensions);
            Assert.True(gguf.TryGetTensor("blk.1.ffn_down.weight.lora_b", out var b));
            Assert.Equal([2L, 64], b.Dimensions);
        }
        using (var lora = new LoraModel(fresh))
        {
            var read = GgufAdapterFile.Load(lora, fresh, "read", path);
            read.Training = false;
            Assert.Equal(10, read.Modules.Count);
            Assert.Equal(2, read.Modules.Single(w => w.Module.Path == "blocks.1.mlp.down").Rank);
            double error = Reference.RelativeError(Logits(fresh, tokens), Reference.ToDouble(withAdapter));
            Assert.True(error <= 1e-5, $"read back: ‖Δ‖/‖ref‖ = {error:E2}");
        }
    }

    [Fact]
    public void An_adapter_s_product_is_the_change_merging_it_makes_to_the_model_file_s_tensors()
    {
        // llama.cpp adds scale·B·A to the model file's tensor: so B·A from the adapter file (scale folded in) must be the
        // difference between the file of the merged model and the bare one, in the rows the model file orders for rope.
        using var model = new GptModel(_backend, LlamaModelTests.Config(Shape, 16), 1, training: false, trainParameters: false);
        model.Initialize(5);
        string bare = Path.Combine(_dir, "bare.gguf"), merged = Path.Combine(_dir, "merged.gguf"), adapterPath = Path.Combine(_dir, "q.gguf");
        GgufModelFile.Write(model, bare, "m");
        using (var lora = new LoraModel(model))
        {
            var adapter = lora.AddAdapter("a", new LoraConfig
            {
                TargetModules = ["q", "k", "down"], Defaults = new LoraOptions { Rank = 3, Alpha = 5, Init = LoraInit.Random, Seed = 4 },
            });
            foreach (var w in adapter.Modules) _backend.Scale(w.B.Value, w.B.Value, 0.3f);
            GgufAdapterFile.Write(adapter, model, adapterPath);
            lora.Merge();
            GgufModelFile.Write(model, merged, "m");
        }
        using var before = GgufReader.Open(bare);
        using var after = GgufReader.Open(merged);
        using var pairs = GgufReader.Open(adapterPath);
        foreach (string name in (string[])["blk.0.attn_q.weight", "blk.1.attn_k.weight", "blk.0.ffn_down.weight"])
        {
            var w0 = Floats(before, name);
            var w1 = Floats(after, name);
            Assert.True(pairs.TryGetTensor(name + ".lora_a", out var aInfo));
            Assert.True(pairs.TryGetTensor(name + ".lora_b", out var bInfo));
            int inFeatures = (int)aInfo.Dimensions[0], rank = (int)aInfo.Dimensions[1], outFeatures = (int)bInfo.Dimensions[1];
            var a = Floats(pairs, name + ".lora_a"); // ggml [in, R]: R rows of in
            var b = Floats(pairs, name + ".lora_b"); // ggml [R, out]: out rows of R
            var product = new double[outFeatures * inFeatures];
            for (int o = 0; o < outFeatures; o++)
                for (int i = 0; i < inFeatures; i++)
                {
                    double sum = 0;
                    for (int r = 0; r < rank; r++) sum += (double)b[o * rank + r] * a[r * inFeatures + i];
                    product[o * inFeatures + i] = sum;
                }
            var change = w1.Select((v, i) => v - w0[i]).ToArray();
            double error = Reference.RelativeError(change, product);
            Assert.True(error <= 1e-4, $"{name}: ‖Δ‖/‖B·A‖ = {error:E2}");
        }
    }

    private static float[] Floats(GgufReader file, string name)
    {
        Assert.True(file.TryGetTensor(name, out var info), name);
        Assert.Equal(GgmlType.F32, info.Type);
        var bytes = new byte[info.Bytes];
        file.ReadBytes(info, bytes);
        return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray();
    }

    [Fact]
    public void What_llama_cpp_cannot_hold_is_refused_by_name()
    {
        using var model = new GptModel(_backend, LlamaModelTests.Config(Shape, 16), 1, training: false, trainParameters: false);
        model.Initialize(3);
        using var lora = new LoraModel(model);
        var fused = lora.AddAdapter("fused", new LoraConfig { TargetModules = ["qkv"], Defaults = new LoraOptions { Rank = 2, Alpha = 2 } });
        Assert.Contains("blocks.0.attn.qkv", Assert.Throws<ArgumentException>(() => GgufAdapterFile.Write(fused, model, Path.Combine(_dir, "f.gguf"))).Message);
        var dora = lora.AddAdapter("dora", new LoraConfig { TargetModules = ["o"], Defaults = new LoraOptions { Rank = 2, Alpha = 2, UseDora = true } });
        Assert.Contains("DoRA", Assert.Throws<ArgumentException>(() => GgufAdapterFile.Write(dora, model, Path.Combine(_dir, "d.gguf"))).Message);
        string notAdapter = Path.Combine(_dir, "model.gguf");
        GgufModelFile.Write(model, notAdapter, "m");
        Assert.Contains("not a LoRA adapter", Assert.Throws<InvalidDataException>(() => GgufAdapterFile.Load(lora, model, "x", notAdapter)).Message);
    }

    private float[] Logits(GptModel model, int[] tokens)
    {
        using var ids = _backend.Allocate(DType.I32, new Shape(1, tokens.Length));
        ids.CopyFrom(tokens);
        model.Forward(ids);
        return model.Logits.ToArray();
    }
}

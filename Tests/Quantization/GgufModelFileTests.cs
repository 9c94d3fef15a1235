using LoraRuntime.Cpu;
using LoraRuntime.IO;
using LoraRuntime.Layers;
using LoraRuntime.Quantization;
using LoraRuntime.Tests.Llama;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Quantization;

/// <summary>
/// A Llama-family model written as GGUF (<c>lora quantize</c>): the keys llama.cpp reads, every tensor under its name
/// with ggml's dimensions and the weight's type, the bytes as the model holds them, q and k rows in llama.cpp's
/// interleaved rotary order (its converter's permutation), and Qwen2's biases under "qwen2".
/// </summary>
public sealed class GgufModelFileTests : IDisposable
{
    private readonly CpuBackend _backend = new();
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "lora-gguf-model-" + Guid.NewGuid().ToString("N"));

    public GgufModelFileTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        _backend.Dispose();
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Theory]
    [InlineData(WeightFormat.F32, false)]
    [InlineData(WeightFormat.Q8_0, false)]
    [InlineData(WeightFormat.Q4_0, true)]
    [InlineData(WeightFormat.BF16, true)]
    public void The_file_holds_the_model_under_llama_cpp_names_and_layouts(WeightFormat format, bool qwen)
    {
        var shape = new LlamaShape(40, 64, 96, 2, 4, 2, 16, 1e-5, qwen, false, false, !qwen, 10000);
        var config = LlamaModelTests.Config(shape, 16);
        using var model = new GptModel(_backend, config, 1, training: false, trainParameters: false,
            format == WeightFormat.F32 ? null : (_, _) => format);
        model.Initialize(3);
        if (qwen) model.Parameters.WriteRows("blocks.0.attn.qkv.bias", 0, Enumerable.Range(0, 128).Select(i => i * 0.01f).ToArray());
        string path = Path.Combine(_dir, "m.gguf");
        GgufModelFile.Write(model, path, "tiny");

        using var gguf = GgufReader.Open(path);
        string arch = qwen ? "qwen2" : "llama";
        Assert.Equal(arch, gguf.Metadata["general.architecture"].AsString());
        Assert.Equal(64, gguf.Metadata[arch + ".embedding_length"].AsInteger());
        Assert.Equal(2, gguf.Metadata[arch + ".attention.head_count_kv"].AsInteger());
        Assert.Equal(96, gguf.Metadata[arch + ".feed_forward_length"].AsInteger());
        Assert.Equal(40, ((string[])gguf.Metadata["tokenizer.ggml.tokens"].Value).Length);
        Assert.Equal(qwen, gguf.TryGetTensor("blk.1.attn_q.bias", out _));
        Assert.Equal(qwen, gguf.TryGetTensor("output.weight", out _)); // untied in the Qwen case
        var type = format switch
        {
            WeightFormat.F32 => GgmlType.F32, WeightFormat.Q8_0 => GgmlType.Q8_0, WeightFormat.Q4_0 => GgmlType.Q4_0, _ => GgmlType.BF16,
        };
        Assert.True(gguf.TryGetTensor("blk.1.ffn_down.weight", out var down));
        Assert.Equal(type, down.Type);
        Assert.Equal([96L, 64], down.Dimensions);
        Assert.True(gguf.TryGetTensor("blk.0.attn_norm.weight", out var norm));
        Assert.Equal(GgmlType.F32, norm.Type);

        // q: llama.cpp's row 2j + s of a head is the model's row s·HS/2 + j (llama); Qwen2 keeps the order.
        Assert.True(gguf.TryGetTensor("blk.0.attn_q.weight", out var q));
        Assert.Equal([64L, 64], q.Dimensions);
        var bytes = new byte[q.Bytes];
        gguf.ReadBytes(q, bytes);
        var fromFile = Decode(type, bytes, 64 * 64);
        var held = Held(model, "blocks.0.attn.qkv.weight", 64, 64);
        for (int h = 0; h < 4; h++)
            for (int j = 0; j < 8; j++)
                for (int s = 0; s < 2; s++)
                {
                    int fileRow = h * 16 + (qwen ? s * 8 + j : 2 * j + s), modelRow = h * 16 + s * 8 + j;
                    Assert.Equal(held.AsSpan(modelRow * 64, 64).ToArray(), fromFile.AsSpan(fileRow * 64, 64).ToArray());
                }
        if (qwen)
        {
            Assert.True(gguf.TryGetTensor("blk.0.attn_k.bias", out var kBias));
            var b = new byte[kBias.Bytes];
            gguf.ReadBytes(kBias, b);
            Assert.Equal(0.64f, BitConverter.ToSingle(b, 0), 6);
        }
    }

    [Fact]
    public void A_gpt2_model_is_written_under_llama_cpp_gpt2_names()
    {
        using var gpt = new GptModel(_backend, new GptConfig(40, 2, 2, 64, 8), 1, training: false, trainParameters: false, (_, _) => WeightFormat.Q8_0);
        gpt.Initialize(4);
        string path = Path.Combine(_dir, "gpt2.gguf");
        GgufModelFile.Write(gpt, path, "g");
        using var gguf = GgufReader.Open(path);
        Assert.Equal("gpt2", gguf.Metadata["general.architecture"].AsString());
        Assert.Equal(8, gguf.Metadata["gpt2.context_length"].AsInteger());
        Assert.True(gguf.TryGetTensor("position_embd.weight", out var positions));
        Assert.Equal([64L, 8], positions.Dimensions);
        Assert.True(gguf.TryGetTensor("blk.1.attn_qkv.weight", out var qkv));
        Assert.Equal(GgmlType.Q8_0, qkv.Type);
        Assert.Equal([64L, 192], qkv.Dimensions);
        Assert.True(gguf.TryGetTensor("blk.1.ffn_down.bias", out _));
        Assert.False(gguf.TryGetTensor("output.weight", out _)); // tied: llama.cpp reuses token_embd
        var bytes = new byte[qkv.Bytes];
        gguf.ReadBytes(qkv, bytes);
        var held = new byte[bytes.Length];
        _backend.ReadEncodedRows(gpt.Parameters.Stored["blocks.1.attn.qkv.weight"], 0, held);
        Assert.Equal(held, bytes);
    }

    [Fact]
    public void An_unsupported_block_or_an_nf4_base_is_refused_by_name()
    {
        using var gpt = new GptModel(_backend, new GptConfig(40, 1, 2, 64, 8) { QkvBias = false }, 1, training: false, trainParameters: false);
        Assert.Contains("GPT-2 models and Llama-family", Assert.Throws<ArgumentException>(() => GgufModelFile.Write(gpt, Path.Combine(_dir, "x.gguf"), "x")).Message);
        var shape = new LlamaShape(40, 64, 128, 1, 4, 2, 16, 1e-5, false, false, false, true, 10000);
        using var nf4 = new GptModel(_backend, LlamaModelTests.Config(shape, 8), 1, training: false, trainParameters: false, (_, _) => WeightFormat.NF4);
        Assert.Contains("NF4", Assert.Throws<ArgumentException>(() => GgufModelFile.Write(nf4, Path.Combine(_dir, "y.gguf"), "y")).Message);
        Assert.False(File.Exists(Path.Combine(_dir, "y.gguf")));
    }

    private static float[] Decode(GgmlType type, byte[] bytes, int count)
    {
        if (type == GgmlType.F32)
        {
            var f = new float[count];
            Buffer.BlockCopy(bytes, 0, f, 0, bytes.Length);
            return f;
        }
        var values = new float[count];
        var format = type switch { GgmlType.Q8_0 => WeightFormat.Q8_0, GgmlType.Q4_0 => WeightFormat.Q4_0, _ => WeightFormat.BF16 };
        WeightRows.Decode(format, bytes, values);
        return values;
    }

    /// <summary>The first <paramref name="rows"/> rows of a weight as the model holds them, decoded.</summary>
    private float[] Held(GptModel model, string name, int rows, int columns)
    {
        using var t = _backend.Allocate(rows, columns);
        if (model.Parameters.Stored.TryGetValue(name, out var m)) _backend.Dequantize(t, m);
        else _backend.Copy(t, model.Parameters[name].Value.View(0, new Shape(rows, columns)));
        return t.ToArray();
    }
}

/// <summary>
/// A GGUF file as a frozen base (<see cref="GgufCheckpoint"/>): a model written by <c>lora quantize</c> loads back with
/// every weight as it was (block rows copied, q and k back in rotate-half order) and gives the same logits; a base
/// asked in another format is converted; what it cannot run is refused by name.
/// </summary>
public sealed class GgufCheckpointTests : IDisposable
{
    private readonly CpuBackend _backend = new();
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "lora-gguf-load-" + Guid.NewGuid().ToString("N"));

    public GgufCheckpointTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        _backend.Dispose();
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Theory]
    [InlineData(WeightFormat.F32, false)]
    [InlineData(WeightFormat.BF16, false)]
    [InlineData(WeightFormat.Q8_0, true)]
    [InlineData(WeightFormat.Q4_0, false)]
    public void A_written_model_loads_back_with_the_same_weights_and_logits(WeightFormat format, bool qwen)
    {
        var shape = new LlamaShape(40, 64, 96, 2, 4, 2, 16, 1e-5, qwen, false, false, !qwen, 10000);
        using var model = new GptModel(_backend, LlamaModelTests.Config(shape, 16), 1, training: false, trainParameters: false,
            format == WeightFormat.F32 ? null : (_, _) => format);
        model.Initialize(5);
        if (qwen) model.Parameters.WriteRows("blocks.1.attn.qkv.bias", 0, Enumerable.Range(0, 128).Select(i => (i % 7) * 0.05f).ToArray());
        string path = Path.Combine(_dir, "m.gguf");
        GgufModelFile.Write(model, path, "tiny");

        var (loaded, tokenizer, layout) = ModelDirectory.Load(_backend, path, maxBatch: 1, storage: WeightStorage.AsStored);
        using (loaded)
        {
            Assert.Equal(40, Assert.IsType<LoraRuntime.Layers.Text.HuggingFaceTokenizer>(tokenizer).VocabularySize); // the placeholder byte vocabulary
            Assert.Equal(ModelLayout.Llama, layout);
            Assert.Equal(model.Config, loaded.Config);
            Assert.Equal(model.Parameters.Stored.Count, loaded.Parameters.Stored.Count);
            Assert.All(loaded.Parameters.Stored.Values, m => Assert.Equal(format, m.Format));
            int[] tokens = [1, 7, 22, 3, 39, 12, 5];
            Assert.Equal(Logits(model, tokens), Logits(loaded, tokens));
        }
        // Asked in another format, the file's weights are decoded and encoded in it.
        using var q4 = GgufCheckpoint.Load(_backend, path, 1, storage: WeightStorage.Quantized(WeightFormat.Q4_0));
        Assert.All(q4.Parameters.Stored.Values, m => Assert.Equal(WeightFormat.Q4_0, m.Format));
    }

    [Theory]
    [InlineData("llama3")]
    [InlineData("linear")]
    public void Rope_scaling_is_written_as_llama_cpp_writes_it_and_read_back_into_the_same_rotations(string scaling)
    {
        var shape = new LlamaShape(40, 64, 96, 2, 4, 2, 16, 1e-5, false, false, false, true, 500000);
        var config = LlamaModelTests.Config(shape, 16);
        var rotary = scaling == "llama3"
            ? config.Rotary! with { Scaling = RopeScaling.Llama3, Factor = 32, LowFrequencyFactor = 1, HighFrequencyFactor = 4, OriginalMaxPositions = 8 }
            : config.Rotary! with { Scaling = RopeScaling.Linear, Factor = 4 };
        using var model = new GptModel(_backend, config with { Rotary = rotary }, 1, training: false, trainParameters: false);
        model.Initialize(9);
        string path = Path.Combine(_dir, scaling + ".gguf");
        GgufModelFile.Write(model, path, "scaled");
        using (var gguf = GgufReader.Open(path))
        {
            if (scaling == "linear")
            {
                Assert.Equal("linear", gguf.Metadata["llama.rope.scaling.type"].AsString());
                Assert.Equal(4, gguf.Metadata["llama.rope.scaling.factor"].AsDouble());
                Assert.False(gguf.TryGetTensor("rope_freqs.weight", out _));
            }
            else
            {
                // llama.cpp's converter: 1 where the wavelength is short, the factor where it is long, smoothed between.
                Assert.True(gguf.TryGetTensor("rope_freqs.weight", out var freqs));
                var bytes = new byte[freqs.Bytes];
                gguf.ReadBytes(freqs, bytes);
                var factors = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray();
                Assert.Equal(8, factors.Length);
                Assert.Equal(32f, factors[^1], 3);
                Assert.InRange(factors[0], 1f, 32f);
                Assert.All(factors, f => Assert.InRange(f, 1f, 32f));
            }
        }
        using var loaded = GgufCheckpoint.Load(_backend, path, 1);
        Assert.Equal(scaling == "linear" ? RopeScaling.Linear : RopeScaling.None, loaded.Config.Rotary!.Scaling);
        Assert.Equal(scaling == "llama3", loaded.Config.Rotary.FrequencyFactors is not null);
        int[] tokens = [1, 7, 22, 3, 39, 12, 5, 30, 2, 11, 18, 25, 9, 4];
        var expected = Logits(model, tokens);
        double error = Reference.RelativeError(Logits(loaded, tokens), Reference.ToDouble(expected));
        Assert.True(error <= 1e-5, $"{scaling}: ‖Δ‖/‖ref‖ = {error:E2}");
        // The scaling matters at these positions: without it the same weights give other logits.
        using var plain = new GptModel(_backend, config, 1, training: false, trainParameters: false);
        plain.Initialize(9);
        Assert.True(Reference.RelativeError(Logits(plain, tokens), Reference.ToDouble(expected)) > 1e-3);
        // A model read with factors writes them again, unchanged.
        string again = Path.Combine(_dir, scaling + "-again.gguf");
        GgufModelFile.Write(loaded, again, "again");
        using var reread = GgufCheckpoint.Load(_backend, again, 1);
        Assert.Equal(Logits(loaded, tokens), Logits(reread, tokens));
    }

    [Fact]
    public void What_it_cannot_run_is_refused_by_name()
    {
        var shape = new LlamaShape(40, 64, 96, 1, 4, 2, 16, 1e-5, false, false, false, true, 10000);
        using var model = new GptModel(_backend, LlamaModelTests.Config(shape, 8), 1, training: false, trainParameters: false);
        model.Initialize(1);
        string path = Path.Combine(_dir, "base.gguf");
        GgufModelFile.Write(model, path, "tiny");

        string Rewrite(Action<GgufWriter, GgufReader> change)
        {
            using var source = GgufReader.Open(path);
            var writer = new GgufWriter();
            change(writer, source);
            string rewritten = Path.Combine(_dir, Guid.NewGuid().ToString("N") + ".gguf");
            writer.Save(rewritten);
            return rewritten;
        }
        void CopyAll(GgufWriter w, GgufReader r, Func<string, bool> keepKey, Func<GgufTensorInfo, bool> keepTensor)
        {
            foreach (var (key, value) in r.Metadata)
                if (keepKey(key)) w.Add(key, value);
            foreach (var t in r.Tensors)
            {
                if (!keepTensor(t)) continue;
                var bytes = new byte[t.Bytes];
                r.ReadBytes(t, bytes);
                w.AddTensor(t.Name, t.Type, t.Dimensions, bytes);
            }
        }
        string gpt2 = Rewrite((w, r) =>
        {
            w.Add("general.architecture", new GgufValue(GgufValueType.String, "gpt2"));
            CopyAll(w, r, k => k != "general.architecture", _ => true);
        });
        Assert.Contains("gpt2", Assert.Throws<InvalidDataException>(() => GgufCheckpoint.Load(_backend, gpt2, 1)).Message);
        string extra = Rewrite((w, r) =>
        {
            CopyAll(w, r, _ => true, _ => true);
            w.AddTensor("blk.0.mystery.weight", GgmlType.F32, [4], new byte[16]);
        });
        Assert.Contains("blk.0.mystery.weight", Assert.Throws<InvalidDataException>(() => GgufCheckpoint.Load(_backend, extra, 1)).Message);
        string kquant = Rewrite((w, r) =>
        {
            CopyAll(w, r, _ => true, t => t.Name != "blk.0.ffn_down.weight");
            w.AddTensor("blk.0.ffn_down.weight", GgmlType.Q5_K, [256, 64], new byte[64 * 176]);
        });
        var e = Assert.Throws<InvalidDataException>(() => GgufCheckpoint.Load(_backend, kquant, 1));
        Assert.Contains("blk.0.ffn_down.weight", e.Message);
        Assert.Contains("Q5_K", e.Message);
    }

    private float[] Logits(GptModel model, int[] tokens)
    {
        using var ids = _backend.Allocate(DType.I32, new Shape(1, tokens.Length));
        ids.CopyFrom(tokens);
        model.Forward(ids);
        return model.Logits.ToArray();
    }
}

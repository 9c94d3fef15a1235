using System.Text;
using LoraRuntime.Cpu;
using LoraRuntime.IO;
using LoraRuntime.Layers;
using LoraRuntime.Quantization;
using LoraRuntime.Tests.Llama;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Quantization;

/// <summary>
/// A bitsandbytes 4-bit checkpoint (transformers' layout for <c>load_in_4bit</c>: packed NF4 bytes, absmax, quant_map,
/// the quant_state JSON, and with double quantization the 8-bit absmax with nested_absmax and nested_quant_map),
/// written here by hand from bitsandbytes' documented dequantization: loaded kept as NF4 or dequantized to float32, a
/// tiny Llama gives the float64 reference's logits on exactly the weights bitsandbytes would compute
/// (code[q]·(nested_quant_map[q′]·nested_absmax + offset)); what it does not read is refused by name.
/// </summary>
public sealed class BitsAndBytesCheckpointTests : IDisposable
{
    private static readonly LlamaShape Shape = new(40, 64, 128, 2, 4, 2, 16, 1e-5, false, false, false, true, 10000);
    private static readonly string[] Projections =
        ["q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight", "gate_proj.weight", "up_proj.weight", "down_proj.weight"];

    private readonly CpuBackend _backend = new();
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "lora-bnb-" + Guid.NewGuid().ToString("N"));

    public BitsAndBytesCheckpointTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        _backend.Dispose();
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Theory]
    [InlineData(true, true)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(false, false)]
    public void A_bnb_nf4_checkpoint_gives_the_reference_logits_of_the_weights_bitsandbytes_dequantizes(bool doubleQuantized, bool keptAsNf4)
    {
        var held = Write(doubleQuantized);
        using var model = LlamaCheckpoint.Load(_backend, _dir, maxBatch: 1, context: 12, storage: keptAsNf4 ? WeightStorage.AsStored : WeightStorage.Float32);
        if (keptAsNf4)
        {
            Assert.Equal(4 * Shape.Layers + 1, model.Parameters.Stored.Count); // qkv, o, gate_up, down, and the embedding
            Assert.All(model.Parameters.Stored, p => Assert.Equal(p.Key == "wte.weight" ? WeightFormat.BF16 : WeightFormat.NF4, p.Value.Format));
        }
        else Assert.Empty(model.Parameters.Stored);
        int[] tokens = Enumerable.Range(0, 12).Select(i => (i * 7 + 3) % Shape.Vocabulary).ToArray();
        using var ids = _backend.Allocate(DType.I32, new Shape(1, tokens.Length));
        ids.CopyFrom(tokens);
        model.Forward(ids);
        double error = Reference.RelativeError(model.Logits.ToArray(), new LlamaReference(Shape, held).Logits(tokens));
        Assert.True(error <= 1e-5, $"‖Δ‖/‖ref‖ = {error:E2}");
    }

    [Fact]
    public void A_bf16_checkpoint_loaded_as_nf4_dq_holds_the_blocks_bitsandbytes_saves_for_QLoRA()
    {
        // The same weights saved by bitsandbytes (q, k, v and gate, up each double-quantized on its own), then as plain BF16.
        Write(doubleQuantized: true, change: "bitsandbytes");
        var fromBitsAndBytes = new Dictionary<string, (WeightFormat Format, byte[] Bytes)>(StringComparer.Ordinal);
        using (var model = LlamaCheckpoint.Load(_backend, _dir, maxBatch: 1, context: 12, storage: WeightStorage.AsStored))
            foreach (var (name, matrix) in model.Parameters.Stored) fromBitsAndBytes[name] = (matrix.Format, Encoded(matrix));
        Write(doubleQuantized: false, change: "plain");
        var storage = WeightStorage.Parse("nf4-dq", "--quantize");
        Assert.True(storage.DoubleQuantized);
        using var loaded = ModelDirectory.Load(_backend, _dir, maxBatch: 1, storage: storage).Model;
        Assert.Equal(fromBitsAndBytes.Keys.Order(), loaded.Parameters.Stored.Keys.Order());
        foreach (var (name, matrix) in loaded.Parameters.Stored)
        {
            // The embedding stays BF16 as transformers leaves it; every projection is NF4, block for block bitsandbytes'.
            Assert.Equal(fromBitsAndBytes[name].Format, matrix.Format);
            Assert.True(fromBitsAndBytes[name].Bytes.AsSpan().SequenceEqual(Encoded(matrix)), $"{name}: its {matrix.Format} blocks differ from bitsandbytes'");
        }

        // Plain NF4 keeps each block's float32 absmax: the same codes, other absmax.
        using var single = ModelDirectory.Load(_backend, _dir, maxBatch: 1, storage: WeightStorage.Parse("nf4", "--quantize")).Model;
        var qkv = Encoded(single.Parameters.Stored["blocks.0.attn.qkv.weight"]);
        Assert.Equal(WeightFormat.NF4, single.Parameters.Stored["wte.weight"].Format);
        Assert.False(qkv.AsSpan().SequenceEqual(fromBitsAndBytes["blocks.0.attn.qkv.weight"].Bytes));
        for (int b = 0; b < qkv.Length; b += WeightFormats.Nf4BlockBytes)
            Assert.True(qkv.AsSpan(b + 4, 32).SequenceEqual(fromBitsAndBytes["blocks.0.attn.qkv.weight"].Bytes.AsSpan(b + 4, 32)));
    }

    [Fact]
    public void Double_quantization_takes_the_pieces_encoded_from_floats_once_and_leaves_copied_blocks_alone()
    {
        using var set = new ParameterSet(_backend);
        var w = set.AddStored("w", WeightFormat.NF4, 8, 128);
        var values = Reference.Random(8 * 128, 3).Select((v, i) => v * (1 + i / 128)).ToArray();
        set.WriteRows("w", 0, values.AsSpan(0, 4 * 128));
        var copied = new byte[4 * w.RowBytes];
        new Random(4).NextBytes(copied);
        for (int b = 0; b < copied.Length; b += WeightFormats.Nf4BlockBytes) BitConverter.TryWriteBytes(copied.AsSpan(b), 0.5f + b % 7);
        _backend.WriteEncodedRows(w, 4, copied);
        var before = Encoded(w);

        set.DoubleQuantizeNf4([("w", 0, 2), ("w", 2, 2), ("w", 4, 4)]);
        var after = Encoded(w);
        Assert.True(after.AsSpan(4 * (int)w.RowBytes).SequenceEqual(copied), "blocks copied as encoded were changed");
        // Each piece of rows encoded from floats on its own: its absmax as DynamicBlocks gives them back, codes as they were.
        for (int piece = 0; piece < 2; piece++)
        {
            int blocks = 2 * 128 / 64, at = piece * 2 * (int)w.RowBytes;
            var absmax = new float[blocks];
            for (int b = 0; b < blocks; b++) absmax[b] = BitConverter.ToSingle(before, at + b * WeightFormats.Nf4BlockBytes);
            DynamicBlocks.DoubleQuantize(absmax);
            for (int b = 0; b < blocks; b++)
            {
                int block = at + b * WeightFormats.Nf4BlockBytes;
                Assert.Equal(absmax[b], BitConverter.ToSingle(after, block));
                Assert.True(after.AsSpan(block + 4, 32).SequenceEqual(before.AsSpan(block + 4, 32)));
            }
        }
        // Once: a second call changes nothing.
        set.DoubleQuantizeNf4([("w", 0, 2), ("w", 2, 2), ("w", 4, 4)]);
        Assert.Equal(after, Encoded(w));
    }

    [Fact]
    public void Double_quantization_is_named_nf4_dq_and_only_for_nf4()
    {
        Assert.Equal("nf4-dq", WeightStorage.Parse(" NF4-DQ ").ToString());
        Assert.False(WeightStorage.Parse("nf4").DoubleQuantized);
        var e = Assert.Throws<ArgumentException>(() => WeightStorage.Parse("nf8", "--quantize"));
        Assert.Equal("--quantize", e.ParamName);
        Assert.Contains("nf4-dq; got 'nf8'", e.Message);
        Assert.Equal("doubleQuantized", Assert.Throws<ArgumentException>(() => WeightStorage.Quantized(WeightFormat.Q4_0, doubleQuantized: true)).ParamName);
    }

    private byte[] Encoded(QuantizedMatrix matrix)
    {
        var bytes = new byte[matrix.Rows * matrix.RowBytes];
        _backend.ReadEncodedRows(matrix, 0, bytes);
        return bytes;
    }

    public static TheoryData<string, string> Refusals => new()
    {
        { "fp4", "only NF4" },
        { "blocksize", "blocks of 128" },
        { "shape", "expected [64, 64]" },
        { "quant_map", "not bitsandbytes' NF4 table" },
        { "missing", "'model.layers.0.self_attn.q_proj.weight.nested_absmax' is missing" },
        { "gptq", "quantization_config.quant_method" },
        { "int8", "LLM.int8" },
        { "quant_type", "quantization_config.bnb_4bit_quant_type" },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public void What_is_not_read_is_refused_naming_it(string change, string expected)
    {
        Write(doubleQuantized: true, change);
        var e = Assert.Throws<InvalidDataException>(() => LlamaCheckpoint.Load(_backend, _dir, maxBatch: 1, context: 12, storage: WeightStorage.AsStored));
        Assert.Contains(expected, e.Message);
    }

    /// <summary>Writes the checkpoint (with one <paramref name="change"/> that makes it unreadable); returns the weights bitsandbytes would compute, float64.</summary>
    private Dictionary<string, double[]> Write(bool doubleQuantized, string change = "")
    {
        string quantization = change switch
        {
            "gptq" => """{"quant_method": "gptq", "bits": 4}""",
            "int8" => """{"quant_method": "bitsandbytes", "load_in_8bit": true, "load_in_4bit": false}""",
            "quant_type" => """{"quant_method": "bitsandbytes", "load_in_4bit": true, "bnb_4bit_quant_type": 4}""",
            _ => """{"quant_method": "bitsandbytes", "load_in_4bit": true, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": true, "bnb_4bit_compute_dtype": "bfloat16"}""",
        };
        bool plain = change == "plain";
        File.WriteAllText(Path.Combine(_dir, "config.json"), $$"""
            {"model_type": "llama", "vocab_size": {{Shape.Vocabulary}}, "hidden_size": {{Shape.Hidden}}, "intermediate_size": {{Shape.Intermediate}},
             "num_hidden_layers": {{Shape.Layers}}, "num_attention_heads": {{Shape.Heads}}, "num_key_value_heads": {{Shape.KvHeads}},
             "rms_norm_eps": 1e-5, "max_position_embeddings": 32, "hidden_act": "silu", "tie_word_embeddings": true, "rope_theta": 10000,
             "quantization_config": {{(plain ? "null" : quantization)}}}
            """);
        var writer = new SafetensorsWriter(SafetensorsDType.BF16);
        var held = new Dictionary<string, double[]>(StringComparer.Ordinal);
        foreach (var (name, (values, dims)) in Tensors())
        {
            if (plain || !Projections.Any(name.EndsWith))
            {
                writer.Add(name, values, dims);
                held[name] = Reference.ToDouble(values);
                continue;
            }
            bool first = name == "model.layers.0.self_attn.q_proj.weight";
            held[name] = Reference.ToDouble(AddBitsAndBytes(writer, name, values, dims[0], dims[1], doubleQuantized,
                change == "bitsandbytes" || first ? change : ""));
        }
        writer.Save(Path.Combine(_dir, "model.safetensors"));
        return held;
    }

    /// <summary>
    /// W as bitsandbytes saves it: NF4 blocks of 64 (absmax per block, the nearest code value of w / absmax; the encoding
    /// tested against bitsandbytes' own values elsewhere) and, double-quantized, the absmax values less their mean in
    /// blocks of 256, each the nearest of a 256-value map times the block's largest magnitude. Returns the weights
    /// bitsandbytes dequantizes from what is written, in float32 as it computes them.
    /// </summary>
    /// <remarks>
    /// With <paramref name="change"/> "bitsandbytes" it is what bitsandbytes itself computes: W's values as the BF16
    /// file holds them, and with double quantization its dynamic map (<see cref="DynamicBlocks"/>), the absmax values'
    /// exact mean as the offset.
    /// </remarks>
    private static float[] AddBitsAndBytes(SafetensorsWriter writer, string name, float[] values, int rows, int columns, bool doubleQuantized, string change)
    {
        bool real = change == "bitsandbytes";
        if (real) values = values.Select(v => BitConverter.UInt32BitsToSingle((uint)WeightRows.ToBFloat16(v) << 16)).ToArray();
        int blocks = values.Length / Nf4Blocks.BlockSize;
        var packed = new byte[values.Length / 2];
        var absmax = new float[blocks];
        Nf4Blocks.Quantize(values, packed, absmax);
        writer.AddRaw(name, SafetensorsDType.U8, packed, values.Length / 2, 1);
        var code = Nf4Blocks.CodeBook.ToArray();
        if (change == "quant_map") code[3] += 1e-6f;
        writer.AddRaw(name + ".quant_map", SafetensorsDType.F32, Bytes(code), 16);
        var state = new StringBuilder($$"""{"quant_type": "{{(change == "fp4" ? "fp4" : "nf4")}}", "blocksize": {{(change == "blocksize" ? 128 : 64)}}, "dtype": "bfloat16", "shape": [{{(change == "shape" ? rows + 1 : rows)}}, {{columns}}]""");
        float[] held = absmax;
        if (doubleQuantized)
        {
            const int nested = 256;
            float offset = real ? (float)(absmax.Sum(a => (double)a) / blocks) : absmax.Sum() / blocks;
            // Any sorted map, which the file carries; bitsandbytes' own for "bitsandbytes".
            var map = Enumerable.Range(0, 256).Select(i => real ? DynamicBlocks.Code(i) : -1f + 2f * i / 255).ToArray();
            int groups = (blocks + nested - 1) / nested;
            var scales = new float[groups];
            var indices = new byte[blocks];
            held = new float[blocks];
            if (real) DynamicBlocks.Quantize(absmax.Select(a => a - offset).ToArray(), nested, indices, scales);
            for (int g = 0; g < groups && real; g++)
                for (int b = g * nested; b < Math.Min(blocks, (g + 1) * nested); b++) held[b] = map[indices[b]] * scales[g] + offset;
            for (int g = 0; g < groups && !real; g++)
            {
                int start = g * nested, end = Math.Min(blocks, start + nested);
                for (int b = start; b < end; b++) scales[g] = Math.Max(scales[g], Math.Abs(absmax[b] - offset));
                for (int b = start; b < end; b++)
                {
                    float x = (absmax[b] - offset) / scales[g];
                    indices[b] = (byte)Enumerable.Range(0, 256).MinBy(k => Math.Abs(map[k] - x));
                    float scaled = map[indices[b]] * scales[g];
                    held[b] = scaled + offset;
                }
            }
            writer.AddRaw(name + ".absmax", SafetensorsDType.U8, indices, blocks);
            if (change != "missing") writer.AddRaw(name + ".nested_absmax", SafetensorsDType.F32, Bytes(scales), groups);
            writer.AddRaw(name + ".nested_quant_map", SafetensorsDType.F32, Bytes(map), 256);
            state.Append($$""", "nested_blocksize": {{nested}}, "nested_dtype": "float32", "nested_offset": {{((double)offset).ToString("R", System.Globalization.CultureInfo.InvariantCulture)}}""");
        }
        else writer.AddRaw(name + ".absmax", SafetensorsDType.F32, Bytes(absmax), blocks);
        state.Append('}');
        byte[] json = Encoding.UTF8.GetBytes(state.ToString());
        writer.AddRaw(name + ".quant_state.bitsandbytes__" + (change == "fp4" ? "fp4" : "nf4"), SafetensorsDType.U8, json, json.Length);
        var weights = new float[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            int nibble = i % 2 == 0 ? packed[i / 2] >> 4 : packed[i / 2] & 0x0F;
            weights[i] = Nf4Blocks.CodeBook[nibble] * held[i / Nf4Blocks.BlockSize];
        }
        return weights;
    }

    private static byte[] Bytes(float[] values) => System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();

    private static Dictionary<string, (float[] Values, int[] Dims)> Tensors() => QuantizedModelTests.Tensors(Shape, seed: 5);
}

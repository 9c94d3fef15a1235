using System.Buffers.Binary;
using LoraRuntime.Cpu;
using LoraRuntime.IO;
using LoraRuntime.Layers;
using LoraRuntime.Quantization;
using LoraRuntime.Tests.Llama;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Quantization;

/// <summary>
/// llama.cpp's Q4_K and Q6_K super-blocks built by hand from known scales, minimums and values (packed by the layout
/// ggml documents), decoded to exactly d·scale·q − dmin·min and d·scale·(q − 32); and a GGUF model of Q4_K_M's kind
/// (Q4_K projections, Q6_K down projections, so fused rows of both types) loaded as a frozen base.
/// </summary>
public sealed class KQuantBlocksTests
{
    [Fact]
    public void Q4_K_decodes_to_d_scale_q_minus_dmin_min()
    {
        var rng = new Random(4);
        var block = new byte[KQuantBlocks.Q4KBytes];
        const float d = 0.5f, dmin = 0.25f;
        BinaryPrimitives.WriteHalfLittleEndian(block, (Half)d);
        BinaryPrimitives.WriteHalfLittleEndian(block.AsSpan(2), (Half)dmin);
        int[] scale = Enumerable.Range(0, 8).Select(_ => rng.Next(64)).ToArray(), min = Enumerable.Range(0, 8).Select(_ => rng.Next(64)).ToArray();
        var packed = block.AsSpan(4, 12);
        for (int j = 0; j < 8; j++)
        {
            if (j < 4)
            {
                packed[j] |= (byte)scale[j];
                packed[j + 4] |= (byte)min[j];
            }
            else
            {
                packed[j + 4] = (byte)((scale[j] & 0xF) | (min[j] & 0xF) << 4);
                packed[j - 4] |= (byte)(scale[j] >> 4 << 6);
                packed[j] |= (byte)(min[j] >> 4 << 6);
            }
        }
        for (int j = 0; j < 8; j++) Assert.Equal((scale[j], min[j]), KQuantBlocks.ScaleMin(j, packed));
        var q = Enumerable.Range(0, 256).Select(_ => rng.Next(16)).ToArray();
        // Each 64 values take 32 bytes: the first 32 values in the low nibbles, the next 32 in the high ones.
        for (int i = 0; i < 256; i++)
        {
            int chunk = i / 64, l = i % 32;
            block[16 + 32 * chunk + l] |= (byte)(i % 64 < 32 ? q[i] : q[i] << 4);
        }
        var values = new float[256];
        WeightRows.Decode(WeightFormat.Q4_K, block, values);
        for (int i = 0; i < 256; i++)
        {
            int sub = i / 32;
            Assert.Equal(d * scale[sub] * q[i] - dmin * min[sub], values[i], 6);
        }
    }

    [Fact]
    public void Q6_K_decodes_to_d_scale_q_minus_32()
    {
        var rng = new Random(6);
        var block = new byte[KQuantBlocks.Q6KBytes];
        const float d = 0.125f;
        BinaryPrimitives.WriteHalfLittleEndian(block.AsSpan(208), (Half)d);
        var scale = Enumerable.Range(0, 16).Select(_ => (sbyte)rng.Next(-128, 128)).ToArray();
        for (int s = 0; s < 16; s++) block[192 + s] = (byte)scale[s];
        var q = Enumerable.Range(0, 256).Select(_ => rng.Next(64)).ToArray();
        // Per half of 128: value 32·k + l (k = 0..3) has its low nibble in ql[l + 32·(k & 1)] (high nibble when k ≥ 2)
        // and its top two bits at bits 2k of qh[l].
        for (int i = 0; i < 256; i++)
        {
            int half = i / 128, r = i % 128, k = r / 32, l = r % 32;
            int qlAt = 64 * half + l + 32 * (k & 1);
            block[qlAt] |= (byte)(k >= 2 ? (q[i] & 0xF) << 4 : q[i] & 0xF);
            block[128 + 32 * half + l] |= (byte)((q[i] >> 4) << (2 * k));
        }
        var values = new float[256];
        WeightRows.Decode(WeightFormat.Q6_K, block, values);
        for (int i = 0; i < 256; i++)
            Assert.Equal(d * scale[i / 16] * (q[i] - 32), values[i], 6);
    }

    [Fact]
    public void K_quants_are_read_not_made()
    {
        Assert.Throws<ArgumentException>(() => WeightStorage.Quantized(WeightFormat.Q4_K));
        Assert.Contains("GGUF", Assert.Throws<ArgumentException>(() => WeightRows.Encode(WeightFormat.Q6_K, new float[256], new byte[210])).Message);
    }

    [Fact]
    public void A_Q4_K_M_style_gguf_model_loads_as_a_frozen_base()
    {
        using var backend = new CpuBackend();
        string dir = Path.Combine(Path.GetTempPath(), "lora-kquant-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            var shape = new LlamaShape(48, 256, 256, 2, 4, 2, 64, 1e-5, false, false, false, true, 10000);
            using (var model = new GptModel(backend, LlamaModelTests.Config(shape, 8), 1, training: false, trainParameters: false))
            {
                model.Initialize(2);
                GgufModelFile.Write(model, Path.Combine(dir, "f32.gguf"), "tiny");
            }
            // Every 2-D weight becomes random K-quant blocks with small scales: Q6_K where the predicate says, Q4_K else.
            string KQuants(string name, Func<string, bool> q6)
            {
                var rng = new Random(8);
                using (var source = GgufReader.Open(Path.Combine(dir, "f32.gguf")))
                {
                    var writer = new GgufWriter();
                    foreach (var (key, value) in source.Metadata) writer.Add(key, value);
                    foreach (var t in source.Tensors)
                    {
                        if (t.Dimensions.Length == 1)
                        {
                            var bytes = new byte[t.Bytes];
                            source.ReadBytes(t, bytes);
                            writer.AddTensor(t.Name, t.Type, t.Dimensions, bytes);
                            continue;
                        }
                        bool six = q6(t.Name);
                        int size = six ? KQuantBlocks.Q6KBytes : KQuantBlocks.Q4KBytes;
                        var blocks = new byte[t.Dimensions[0] * t.Dimensions[1] / 256 * size];
                        rng.NextBytes(blocks);
                        for (int b = 0; b < blocks.Length; b += size)
                            if (six) BinaryPrimitives.WriteHalfLittleEndian(blocks.AsSpan(b + 208), (Half)0.0002f);
                            else
                            {
                                BinaryPrimitives.WriteHalfLittleEndian(blocks.AsSpan(b), (Half)0.0005f);
                                BinaryPrimitives.WriteHalfLittleEndian(blocks.AsSpan(b + 2), (Half)0.0004f);
                            }
                        writer.AddTensor(t.Name, six ? GgmlType.Q6_K : GgmlType.Q4_K, t.Dimensions, blocks);
                    }
                    writer.Save(Path.Combine(dir, name));
                }
                return Path.Combine(dir, name);
            }
            string path = KQuants("k.gguf", n => n.Contains("ffn_down"));
            using var stored = GgufCheckpoint.Load(backend, path, 1, storage: WeightStorage.AsStored);
            using var dense = GgufCheckpoint.Load(backend, path, 1, storage: WeightStorage.Float32);
            Assert.Equal(WeightFormat.Q4_K, stored.Parameters.Stored["wte.weight"].Format);
            Assert.Equal(WeightFormat.Q6_K, stored.Parameters.Stored["blocks.0.mlp.down.weight"].Format);
            Assert.Equal(WeightFormat.Q4_K, stored.Parameters.Stored["blocks.0.mlp.gate_up.weight"].Format);
            Assert.Equal(WeightFormat.Q4_K, stored.Parameters.Stored["blocks.0.attn.qkv.weight"].Format);
            int[] tokens = [3, 17, 40, 8, 29];
            double error = Reference.RelativeError(Logits(backend, stored, tokens), Reference.ToDouble(Logits(backend, dense, tokens)));
            Assert.True(error <= 1e-5, $"K-quant base against its float32 decoding: ‖Δ‖/‖ref‖ = {error:E2}");
            // Q4_K_M's q and k in Q4_K beside v in Q6_K: the fused rows take Q8_0, which holds both.
            using var mixed = GgufCheckpoint.Load(backend, KQuants("mixed.gguf", n => n.Contains("attn_v")), 1, storage: WeightStorage.AsStored);
            Assert.Equal(WeightFormat.Q8_0, mixed.Parameters.Stored["blocks.1.attn.qkv.weight"].Format);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData(WeightFormat.Q4_K)]
    [InlineData(WeightFormat.Q6_K)]
    public void A_product_with_K_quant_weights_over_several_depth_blocks_matches_float64(WeightFormat format)
    {
        // K = 768 over the GEMM's depth blocks of 384, whose second starts inside a 256-value super-block: K-quants are
        // decoded a chunk of whole rows at a time (decoding whole super-blocks around each depth block measured slower:
        // a third more decoding at this depth; Q6_K 768×1536, 32 rows: 2.6 against 1.6 ms).
        const int n = 70, k = 768;
        using var backend = new CpuBackend();
        var rng = new Random(4);
        int size = format == WeightFormat.Q6_K ? KQuantBlocks.Q6KBytes : KQuantBlocks.Q4KBytes;
        var blocks = new byte[n * k / 256 * size];
        rng.NextBytes(blocks);
        for (int b = 0; b < blocks.Length; b += size)
            if (format == WeightFormat.Q6_K) BinaryPrimitives.WriteHalfLittleEndian(blocks.AsSpan(b + 208), (Half)0.0002f);
            else
            {
                BinaryPrimitives.WriteHalfLittleEndian(blocks.AsSpan(b), (Half)0.0005f);
                BinaryPrimitives.WriteHalfLittleEndian(blocks.AsSpan(b + 2), (Half)0.0004f);
            }
        using var w = backend.CreateQuantized(format, n, k);
        backend.WriteEncodedRows(w, 0, blocks);
        var dense = new float[n * k];
        WeightRows.Decode(format, blocks, dense);
        foreach (int m in new[] { 9, 33 })
        {
            var a = Enumerable.Range(0, m * k).Select(_ => rng.NextSingle() - 0.5f).ToArray();
            using var x = backend.FromArray(a, m, k);
            using var c = backend.Allocate(DType.F32, new Shape(m, n));
            backend.GemmQuantized(Transpose.Yes, m, 1f, x, 0, k, w, 0f, c, 0, n);
            var expected = new double[m * n];
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    double sum = 0;
                    for (int d = 0; d < k; d++) sum += (double)a[i * k + d] * dense[j * k + d];
                    expected[i * n + j] = sum;
                }
            double error = Reference.RelativeError(c.ToArray(), expected);
            Assert.True(error <= 1e-5, $"{format}, {m} rows: ‖Δ‖/‖ref‖ = {error:E2}");
        }
    }

    private static float[] Logits(Backend backend, GptModel model, int[] tokens)
    {
        using var ids = backend.Allocate(DType.I32, new Shape(1, tokens.Length));
        ids.CopyFrom(tokens);
        model.Forward(ids);
        return model.Logits.ToArray();
    }
}

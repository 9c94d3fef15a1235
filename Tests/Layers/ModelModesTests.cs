using LoraRuntime.Cpu;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Layers.Serving;
using LoraRuntime.Tests.Gpt2;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Layers;

/// <summary>
/// One model, three modes: for every kind of model the runtime loads — its own, a Hugging Face GPT-2 checkpoint, a
/// compressed (factored) one, Llama-family ones (grouped-query attention with rotary positions and an untied head;
/// Qwen2's biases and one key/value head; an explicit head size with partial rotary; Qwen3's q/k norms) — bare and with LoRA, rsLoRA and
/// DoRA adapters attached, the logits of the training
/// forward pass, of a prefill (whole, and in chunks) and of token-by-token decode over the KV cache agree within 1e-5
/// relative, position by position.
/// </summary>
public sealed class ModelModesTests : IDisposable
{
    private const double Tolerance = 1e-5;
    private static readonly GptConfig Ours = new(Vocabulary: 17, Layers: 2, Heads: 2, Channels: 32, BlockSize: 12);
    private readonly CpuBackend _backend = new();
    private readonly Gpt2Fixture _gpt2 = new();

    public void Dispose() => _gpt2.Dispose();

    public static TheoryData<string, string> Cases => new()
    {
        { "ours", "none" }, { "ours", "lora" }, { "ours", "rslora" }, { "ours", "dora" },
        { "gpt2", "none" }, { "gpt2", "lora" }, { "gpt2", "dora" },
        { "factored", "none" }, { "factored", "lora" },
        { "llama-gqa", "none" }, { "llama-gqa", "lora" }, { "llama-gqa", "dora" },
        { "qwen2-mqa-bias", "none" }, { "qwen2-mqa-bias", "rslora" }, { "partial-rotary", "lora" }, { "yarn", "none" },
        { "qwen3-qk-norm", "none" }, { "qwen3-qk-norm", "dora" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Training_forward_prefill_and_decode_give_the_same_logits(string model, string adapter)
    {
        using var m = Build(model);
        using var lora = new LoraModel(m);
        if (adapter != "none")
        {
            var added = lora.AddAdapter("a", new LoraConfig
            {
                TargetModules = [LoraConfig.AllLinear], // a Llama block's: q, k, v, o, gate, up, down (slices of the fused projections)
                Defaults = new LoraOptions { Rank = 3, Alpha = 5, Init = LoraInit.Random, Seed = 7, UseRsLora = adapter == "rslora", UseDora = adapter == "dora" },
            });
            // A random B is large for these widths: shrink it so that the adapter perturbs the model rather than swamps it.
            foreach (var w in added.Modules) _backend.Scale(w.B.Value, w.B.Value, 0.3f);
            added.Training = false;
        }
        int t = m.Config.BlockSize, v = m.Config.Vocabulary;
        int[] tokens = Enumerable.Range(0, t).Select(i => (i * 7 + 3) % v).ToArray();

        using var ids = _backend.Allocate(DType.I32, new Shape(1, t));
        _backend.Upload(ids, tokens);
        m.Forward(ids);
        var training = m.Logits.ToArray();
        string what = $"{model} with {adapter}";

        using var decoder = new KvCacheDecoder(new ServingLayout(m), slots: 2, maxStepTokens: t);
        var logits = new float[2 * v];
        // Token by token in slot 0: position i's logits are the training pass's row i.
        for (int i = 0; i < t; i++)
        {
            decoder.Forward([new DecodeRow(0, i, 1, null)], tokens.AsSpan(i, 1), logits);
            AssertClose(training.AsSpan(i * v, v), logits.AsSpan(0, v), $"{what}: decode at {i}");
        }
        // The whole sequence as one prefill, in slot 1, then as chunks of 5 beside a decode row in slot 0.
        decoder.Forward([new DecodeRow(1, 0, t, null)], tokens, logits);
        AssertClose(training.AsSpan((t - 1) * v, v), logits.AsSpan(0, v), $"{what}: prefill");
        for (int start = 0; start < t; start += 5)
        {
            int count = Math.Min(5, t - start);
            decoder.Forward([new DecodeRow(1, start, count, null), new DecodeRow(0, t - 1, 1, null)], [.. tokens.AsSpan(start, count), tokens[t - 1]], logits);
            AssertClose(training.AsSpan((start + count - 1) * v, v), logits.AsSpan(0, v), $"{what}: chunk at {start}");
            AssertClose(training.AsSpan((t - 1) * v, v), logits.AsSpan(v, v), $"{what}: decode beside a chunk at {start}");
        }
    }

    private GptModel Build(string kind)
    {
        switch (kind)
        {
            case "ours":
            case "factored":
            {
                var config = kind == "ours" ? Ours : Ours with
                {
                    FactoredRanks = new Dictionary<string, int> { ["blocks.0.attn.qkv"] = 6, ["blocks.1.mlp.fc"] = 5, ["blocks.1.attn.o"] = 4 },
                };
                var model = new GptModel(_backend, config, maxBatch: 1, training: false, trainParameters: false);
                // Every parameter random (norms about 1), so that each takes part.
                int seed = 100;
                foreach (var p in model.Parameters.Parameters)
                {
                    bool normWeight = p.Name.Contains("ln", StringComparison.Ordinal) && p.Name.EndsWith(".weight", StringComparison.Ordinal);
                    p.Value.CopyFrom(Reference.Random((int)p.Shape.Length, seed++).Select(x => (normWeight ? 1 : 0) + 0.2f * x).ToArray());
                }
                return model;
            }
            case "gpt2":
                return Gpt2Checkpoint.Load(_backend, _gpt2.Write(Gpt2Fixture.RandomTensors(11)), maxBatch: 1);
            case var llama when Llama.LlamaModelTests.Cases.TryGetValue(llama, out var shape):
                return Llama.LlamaModelTests.Build(_backend, shape, blockSize: 12, seed: 5);
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown model kind");
        }
    }

    private static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        double error = Reference.RelativeError(actual, Reference.ToDouble(expected));
        Assert.True(error <= Tolerance, $"{what}: ‖Δ‖/‖ref‖ = {error:E2} > {Tolerance:E0}");
    }
}

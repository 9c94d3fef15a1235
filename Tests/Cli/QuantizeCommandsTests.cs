using LoraRuntime.Cli;
using LoraRuntime.Cli.Bench;
using LoraRuntime.IO;
using Xunit;

namespace LoraRuntime.Tests.Cli;

/// <summary>
/// The low-precision commands in-process: a Llama-style model trained for a few steps, then fine-tuned over an NF4
/// base (QLoRA), written as a Q4_0 GGUF model with its adapter, the GGUF adapter continuing a prompt as the PEFT one; the
/// latency benchmark over a Q8_0 base with a batched decode step; and bad formats refused as usage errors.
/// </summary>
public sealed class QuantizeCommandsTests : IDisposable
{
    private readonly StringWriter _out = new(), _error = new();
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "lora-cli-quant-" + Guid.NewGuid().ToString("N"));

    public QuantizeCommandsTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private int Run(params string[] args) => LoraApp.Run(args, Terminal.ForWriters(_out, _error));

    [Fact]
    public void Qlora_then_gguf_model_and_adapter_then_generation_from_the_file()
    {
        string corpus = Path.Combine(_dir, "corpus.txt"), model = Path.Combine(_dir, "m"), adapter = Path.Combine(_dir, "a");
        string gguf = Path.Combine(_dir, "m.gguf"), adapterGguf = Path.Combine(_dir, "a.gguf");
        File.WriteAllText(corpus, string.Concat(Enumerable.Repeat("ROMEO:\nBut soft, what light through yonder window breaks?\n\n", 60)));
        Assert.True(Run("train", "--data", corpus, "--out", model, "--iters", "4", "--arch", "llama", "--layers", "1", "--heads", "2", "--embd", "64",
            "--block", "16", "--batch", "2", "--eval-every", "4", "--eval-iters", "1") == 0, _error.ToString());
        Assert.True(Run("finetune", "--base", model, "--data", corpus, "--out", adapter, "--iters", "3", "--batch", "2", "--eval-every", "3",
            "--eval-iters", "1", "--rank", "2", "--targets", "q,v", "--quantize", "nf4-dq") == 0, _error.ToString());
        Assert.True(File.Exists(Path.Combine(adapter, "adapter_model.safetensors")));
        Assert.True(Run("quantize", "--base", model, "--format", "q4_0", "--out", gguf, "--adapter", adapter, "--adapter-out", adapterGguf) == 0, _error.ToString());
        using (var file = GgufReader.Open(gguf))
        {
            Assert.Equal("llama", file.Metadata["general.architecture"].AsString());
            Assert.True(file.TryGetTensor("blk.0.attn_q.weight", out var q));
            Assert.Equal(GgmlType.Q4_0, q.Type);
            Assert.True(file.TryGetTensor("blk.0.ffn_down.weight", out var down)); // its rows are not whole blocks of 32: BF16, as llama.cpp falls back
            Assert.Equal(file.TryGetTensor("blk.0.ffn_up.weight", out var up) && up.Dimensions[1] % 32 == 0 ? GgmlType.Q4_0 : GgmlType.BF16, down.Type);
        }
        using (var file = GgufReader.Open(adapterGguf))
            Assert.True(file.TryGetTensor("blk.0.attn_v.weight.lora_b", out _));
        // The adapter read back from GGUF continues a prompt as the PEFT adapter it came from.
        string Generate(string adapterPath)
        {
            _out.GetStringBuilder().Clear();
            Assert.True(Run("generate", "--base", model, "--adapter", adapterPath, "--prompt", "RO", "--tokens", "12", "--temperature", "0") == 0, _error.ToString());
            return _out.ToString();
        }
        Assert.Equal(Generate(adapter), Generate(adapterGguf));
    }

    [Fact]
    public void Latency_over_a_q8_0_base_times_a_batched_decode_step()
    {
        string json = Path.Combine(_dir, "lat.json");
        Assert.True(Run("bench", "latency", "--models", "2x2x64x40x24", "--prompt-tokens", "8", "--context", "10", "--rank", "2", "--reps", "20",
            "--warmup", "3", "--warmup-seconds", "0", "--device", "cpu", "--quantize", "q8_0", "--sequences", "3", "--json", json) == 0, _error.ToString());
        var records = BenchReport.ReadLatencyJson(json);
        Assert.All(records, r => Assert.Equal("2x2x64x40x24:q8_0", r.Model));
        var batch = Assert.Single(records, r => r.Op == "decode_batch");
        Assert.Equal(3, batch.Tokens);
        Assert.Equal(0, batch.AllocatedBytes);
    }

    [Theory]
    [InlineData("generate", "--quantize")]
    [InlineData("quantize", "--format")]
    public void A_bad_format_is_a_usage_error_naming_the_option(string command, string option)
    {
        string[] args = command == "generate"
            ? ["generate", "--base", _dir, "--quantize", "q5_1"]
            : ["quantize", "--model", "smollm2-135m", "--format", "nf4", "--out", Path.Combine(_dir, "x.gguf")];
        Assert.Equal(ExitCodes.Usage, Run(args));
        Assert.Contains(option, _error.ToString());
    }
}

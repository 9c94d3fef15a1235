using LoraRuntime.Cli;
using Xunit;

namespace LoraRuntime.Tests.Cli;

/// <summary>train → finetune → generate and the demo, in-process with tiny step counts.</summary>
public sealed class TrainingCommandsTests : IDisposable
{
    private readonly StringWriter _out = new(), _error = new();
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "lora-cli-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private int Run(params string[] args) => LoraApp.Run(args, Terminal.ForWriters(_out, _error));

    private string Corpus()
    {
        Directory.CreateDirectory(_dir);
        string path = Path.Combine(_dir, "corpus.txt");
        File.WriteAllText(path, string.Concat(Enumerable.Repeat("ROMEO:\nBut soft, what light through yonder window breaks?\n\n", 60)));
        return path;
    }

    [Fact]
    public void TrainFinetuneGenerateAndResume()
    {
        string corpus = Corpus(), model = Path.Combine(_dir, "m"), adapter = Path.Combine(_dir, "a"), summary = Path.Combine(_dir, "s.json");
        string[] small = ["--layers", "1", "--heads", "2", "--embd", "16", "--block", "16", "--batch", "2", "--eval-every", "4", "--eval-iters", "2"];
        Assert.Equal(0, Run(["train", "--data", corpus, "--out", model, "--iters", "8", "--json", summary, .. small]));
        string json = File.ReadAllText(summary);
        foreach (var key in new[] { "\"iters\"", "\"train_loss\"", "\"val_loss\"", "\"ms_per_iter_median\"", "\"tokens_per_s\"" }) Assert.Contains(key, json);
        Assert.True(File.Exists(Path.Combine(model, "model.safetensors")));
        Assert.True(File.Exists(Path.Combine(model, "loss.png")));
        Assert.Equal(0, Run(["train", "--data", corpus, "--out", model, "--iters", "12", "--resume", .. small]));
        Assert.Contains("resumed at step 8", _error.ToString());
        Assert.Equal(0, Run("finetune", "--base", model, "--data", corpus, "--out", adapter, "--iters", "4", "--batch", "2",
            "--eval-every", "2", "--eval-iters", "1", "--rank", "2", "--targets", "q,v"));
        Assert.True(File.Exists(Path.Combine(adapter, "adapter_config.json")));
        // A second run into the same folder would mix its checkpoints with the first's: refused unless it resumes.
        Assert.Equal(2, Run("finetune", "--base", model, "--data", corpus, "--out", adapter, "--iters", "4", "--batch", "2", "--rank", "2", "--targets", "q,v"));
        Assert.Contains("holds the checkpoints of an earlier run; pass --resume", _error.ToString());
        _out.GetStringBuilder().Clear();
        Assert.Equal(0, Run("generate", "--base", model, "--adapter", adapter + ":0.5", "--prompt", "ROMEO:", "--tokens", "10"));
        Assert.StartsWith("ROMEO:", _out.ToString());
        Assert.Equal(2, Run("generate", "--base", model, "--prompt", "ROMEO: ~", "--tokens", "3"));
        Assert.Equal(2, Run("finetune", "--base", model, "--data", corpus, "--out", adapter, "--targets", "attn"));
        Assert.Equal(2, Run("train", "--data", Path.Combine(_dir, "missing.txt"), "--out", model));
    }

    [Fact]
    public void A_llama_style_model_trains_saves_its_architecture_and_fine_tunes()
    {
        string corpus = Corpus(), model = Path.Combine(_dir, "llama"), adapter = Path.Combine(_dir, "llama-adapter");
        string[] small = ["--layers", "2", "--heads", "4", "--embd", "16", "--block", "16", "--batch", "2", "--eval-every", "4", "--eval-iters", "2"];
        Assert.Equal(0, Run(["train", "--arch", "llama", "--data", corpus, "--out", model, "--iters", "6", .. small]));
        Assert.Contains("Llama-style 2L/4H/16C", _error.ToString());
        var (config, _, _) = LoraRuntime.Layers.GptFiles.ReadConfig(model);
        Assert.Equal(LoraRuntime.Cli.Training.Architectures.Apply(new LoraRuntime.Layers.GptConfig(config.Vocabulary, 2, 4, 16, 16), "llama"), config);
        Assert.Equal((LoraRuntime.Layers.NormKind.RmsNorm, LoraRuntime.Layers.MlpKind.GatedSilu, 2, 48), (config.Norm, config.Mlp, config.KvHeads, config.Hidden));
        Assert.Equal(0, Run("finetune", "--base", model, "--data", corpus, "--out", adapter, "--iters", "3", "--batch", "2",
            "--eval-every", "3", "--eval-iters", "1", "--rank", "2", "--targets", "q,v,gate,down"));
        _out.GetStringBuilder().Clear();
        Assert.Equal(0, Run("generate", "--base", model, "--adapter", adapter, "--prompt", "ROMEO:", "--tokens", "10"));
        Assert.StartsWith("ROMEO:", _out.ToString());
        Assert.Equal(2, Run("train", "--arch", "mamba", "--data", corpus, "--out", model));
        Assert.Contains("--arch", _error.ToString());
    }

    [Fact]
    public void DemoRunsStartToFinish()
    {
        string outDir = Path.Combine(_dir, "demo");
        Assert.Equal(0, Run("demo", "--out", outDir, "--iters", "3", "--finetune-iters", "2", "--tokens", "8"));
        string text = _out.ToString();
        Assert.Contains("held-out JULIET loss", text);
        Assert.Contains("LoRA adapter (r = 8)", text);
        Assert.True(File.Exists(Path.Combine(outDir, "adapter-juliet", "adapter_model.safetensors")));
        Assert.True(File.Exists(Path.Combine(outDir, "model", "loss.png")));
    }
}

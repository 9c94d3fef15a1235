using System.Text.Json;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Compression;
using LoraRuntime.Tests.Linalg;
using Xunit;
using Reference = LoraRuntime.Tests.Support.Reference;

namespace LoraRuntime.Tests.Compression;

/// <summary><c>lora compress</c>: exact recovery of low-rank layers, rank by energy, the model format, bad input.</summary>
public sealed class CompressTests : IDisposable
{
    private readonly CompressionFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Fact]
    public void A_layer_of_exact_rank_k_is_recovered_and_the_compressed_model_gives_the_same_logits()
    {
        using var model = _f.Model();
        var fc = ((Mlp)model.Stack.Blocks[0].Mlp).Fc;
        double[] w = CompressionFixture.LowRank(64, 16, 3, seed: 5);
        fc.Weight.Value.CopyFrom(CompressionFixture.ToFloat(w));
        var expected = _f.Logits(model);

        var (compressed, layers) = ModelCompression.Compress(model, new CompressionOptions(RankChoice.Fixed(3), ["fc"]), maxBatch: 2);
        using (compressed)
        {
            var row = Assert.Single(layers);
            Assert.Equal(("blocks.0.mlp.fc", 64, 16, 3, true), (row.Layer, row.OutFeatures, row.InFeatures, row.Rank, row.Factored));
            Assert.True(row.RelativeError <= 1e-5, $"report: relative error {row.RelativeError:E2}");
            Assert.InRange(row.KeptEnergy, 1 - 1e-5, 1);
            Assert.Equal((64L * 16, 3L * (64 + 16)), (row.ParametersBefore, row.ParametersAfter));
            // U·V against the float64 matrix.
            var linear = ((Mlp)compressed.Stack.Blocks[0].Mlp).Fc;
            Assert.True(linear.IsFactored);
            float[] u = linear.FactorU!.Value.ToArray(), v = linear.FactorV!.Value.ToArray();
            var product = new float[64 * 16];
            for (int i = 0; i < 64; i++)
                for (int j = 0; j < 16; j++)
                {
                    double s = 0;
                    for (int k = 0; k < 3; k++) s += (double)u[i * 3 + k] * v[k * 16 + j];
                    product[i * 16 + j] = (float)s;
                }
            Assert.True(Reference.RelativeError(product, w) <= 1e-5);
            // The biases and every other parameter are kept; the model runs and agrees.
            Assert.Equal(model.Parameters["blocks.0.mlp.fc.bias"].Value.ToArray(), compressed.Parameters["blocks.0.mlp.fc.bias"].Value.ToArray());
            Assert.True(Reference.RelativeError(_f.Logits(compressed), Reference.ToDouble(expected)) <= 1e-5);
            Assert.Equal(model.Parameters.Count - 64 * 16 + 3 * 80, compressed.Parameters.Count);

            // It saves and loads as a model directory that records the factored layer.
            string dir = _f.Save(compressed, "compressed");
            Assert.Contains("\"factored_ranks\"", File.ReadAllText(Path.Combine(dir, GptFiles.ConfigFile)));
            var (loaded, _, _) = GptFiles.Load(_f.Backend, dir, maxBatch: 2);
            using (loaded)
            {
                Assert.Equal(3, loaded.Config.FactoredRanks["blocks.0.mlp.fc"]);
                Assert.Equal(_f.Logits(compressed), _f.Logits(loaded));
            }
        }
    }

    [Fact]
    public void Energy_picks_the_smallest_rank_that_keeps_the_fraction_of_a_known_spectrum()
    {
        // σ = 4, 3, 2, 1: σ² = 16, 9, 4, 1 of 30, so the top 1, 2, 3, 4 keep 0.533, 0.833, 0.967, 1.
        double[] sigma = [4, 3, 2, 1];
        using var w = _f.Backend.FromArray(LinalgReference.WithSingularValues(40, 24, sigma, seed: 3), 40, 24);
        foreach (var (energy, rank) in new[] { (0.5, 1), (0.8, 2), (0.95, 3), (0.99, 4), (1.0, 4) })
        {
            var f = LowRankFactorization.Factor(w, RankChoice.KeepEnergy(energy), "w");
            if (energy < 1) Assert.Equal(rank, f.Rank);
            else Assert.InRange(f.Rank, 4, 24); // all of the energy: rounding noise may add near-zero triplets
            double kept = sigma.Take(rank).Sum(s => s * s) / 30;
            Assert.True(Math.Abs(f.KeptEnergy - kept) <= 1e-5, $"energy {energy}: kept {f.KeptEnergy}, expected {kept}");
            Assert.True(Math.Abs(f.RelativeError - Math.Sqrt(1 - kept)) <= 1e-5, $"energy {energy}: error {f.RelativeError}, expected {Math.Sqrt(1 - kept)}");
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => RankChoice.KeepEnergy(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => RankChoice.KeepEnergy(1.01));
    }

    [Fact]
    public void The_cli_writes_a_model_that_generates_and_reports_both_validation_losses()
    {
        string corpus = _f.PathOf("corpus.txt");
        File.WriteAllText(corpus, string.Concat(Enumerable.Repeat("abcdefg gfedcba abba cafe bead\n".Replace(" ", "").Replace("\n", "g"), 60)));
        using (var model = _f.Model()) _f.Save(model, "m");
        string out1 = _f.PathOf("c"), json = _f.PathOf("report.json");
        Assert.Equal(0, _f.Run("compress", "--model", _f.PathOf("m"), "--energy", "0.9", "--targets", "fc,proj", "--out", out1, "--data", corpus, "--keep-dense-if-larger",
            "--json", json, "--batch", "2", "--eval-iters", "3"));
        string text = _f.Out.ToString();
        Assert.Contains("mlp.fc", text);
        Assert.Contains("validation loss", text);
        using (var doc = JsonDocument.Parse(File.ReadAllBytes(json)))
        {
            var root = doc.RootElement;
            Assert.Equal(["blocks.0.mlp.fc", "blocks.0.mlp.proj"], root.GetProperty("layers").EnumerateArray().Select(l => l.GetProperty("layer").GetString()));
            Assert.True(double.IsFinite(root.GetProperty("validation_loss_original").GetDouble()));
            Assert.True(double.IsFinite(root.GetProperty("validation_loss_compressed").GetDouble()));
            foreach (var layer in root.GetProperty("layers").EnumerateArray())
                Assert.True(layer.GetProperty("kept_energy").GetDouble() >= 0.9 || !layer.GetProperty("factored").GetBoolean());
        }
        Assert.Equal(0, _f.Run("generate", "--base", out1, "--prompt", "ab", "--tokens", "4"));
        // Without --keep-dense-if-larger every chosen layer is factored, even where the factors are larger.
        Assert.Equal(0, _f.Run("compress", "--model", _f.PathOf("m"), "--energy", "0.99", "--out", _f.PathOf("c2"), "--json", json));
        using (var doc = JsonDocument.Parse(File.ReadAllBytes(json)))
            Assert.All(doc.RootElement.GetProperty("layers").EnumerateArray(), l => Assert.True(l.GetProperty("factored").GetBoolean()));
        Assert.Equal(0, _f.Run("generate", "--base", _f.PathOf("c2"), "--prompt", "ab", "--tokens", "4"));
        // A compressed model fine-tunes with LoRA on its factored layers; merging into them is refused, naming the reason.
        Assert.Equal(0, _f.Run("finetune", "--base", _f.PathOf("c2"), "--data", corpus, "--out", _f.PathOf("a"), "--iters", "2", "--batch", "2",
            "--eval-every", "1", "--eval-iters", "1", "--rank", "2", "--targets", "fc,q"));
        Assert.Equal(2, _f.Run("merge", "--base", _f.PathOf("c2"), "--adapter", _f.PathOf("a"), "--out", _f.PathOf("merged")));
        Assert.Contains("factored", _f.Error.ToString());
        Assert.False(Directory.Exists(_f.PathOf("merged")));
    }

    [Theory]
    [InlineData("--rank", "17", "min(OC, C) = 16")]
    [InlineData("--energy", "0", "(0, 1]")]
    [InlineData("--energy", "1.5", "(0, 1]")]
    [InlineData("--targets", "q", "slice")]
    public void Bad_options_are_clear_errors_and_write_nothing(string option, string value, string message)
    {
        using (var model = _f.Model()) _f.Save(model, "m");
        string outDir = _f.PathOf("never");
        string[] args = option == "--targets"
            ? ["compress", "--model", _f.PathOf("m"), "--rank", "2", option, value, "--out", outDir]
            : ["compress", "--model", _f.PathOf("m"), option, value, "--out", outDir];
        Assert.Equal(2, _f.Run(args));
        Assert.Contains(message, _f.Error.ToString());
        Assert.False(Directory.Exists(outDir));
        Assert.Equal(2, _f.Run("compress", "--model", _f.PathOf("m"), "--rank", "2", "--energy", "0.5", "--out", outDir));
        Assert.Contains("exactly one", _f.Error.ToString());
        Assert.False(Directory.Exists(outDir));
    }
}

using LoraRuntime.Layers;
using LoraRuntime.Layers.Serving;
using LoraRuntime.Layers.Training;
using Xunit;

namespace LoraRuntime.Tests.Serving;

/// <summary>The sampler: greedy, the draws of a float64 inverse-CDF reference without top-p, and the nucleus's distribution.</summary>
public sealed class TokenSamplerTests
{
    private static readonly float[] Logits = [0.3f, 2.0f, -1.0f, 1.2f, 0.9f, -0.4f, 1.9f, 0.0f];

    [Fact]
    public void Greedy_and_top_k_of_one_take_the_first_argmax()
    {
        var sampler = new TokenSampler(Logits.Length);
        var random = new TrainingRandom(3);
        Assert.Equal(1, sampler.Sample(Logits, new SamplingOptions(Temperature: 0), 1f, ref random));
        for (int i = 0; i < 50; i++) Assert.Equal(1, sampler.Sample(Logits, new SamplingOptions(Temperature: 2, TopK: 1), 1f, ref random));
        float[] tie = [1, 5, 5];
        Assert.Equal(1, sampler.Sample(tie, new SamplingOptions(Temperature: 0), 1f, ref random));
    }

    [Theory]
    [InlineData(0.7f, 0)]
    [InlineData(1.3f, 3)]
    [InlineData(1f, 8)]
    public void Without_top_p_it_draws_what_an_inverse_cdf_reference_draws(float temperature, int topK)
    {
        var sampler = new TokenSampler(Logits.Length);
        var options = new SamplingOptions(temperature, topK);
        for (ulong seed = 0; seed < 40; seed++)
        {
            TrainingRandom a = new(seed), b = new(seed);
            for (int i = 0; i < 5; i++)
                Assert.Equal(ReferenceDraw(Logits, options, ref a), sampler.Sample(Logits, options, 1f, ref b));
        }
    }

    /// <summary>softmax(logits / T) over the K largest logits (ties at the cutoff kept), drawn by inverse CDF with one uniform.</summary>
    private static int ReferenceDraw(float[] logits, SamplingOptions options, ref TrainingRandom random)
    {
        double cutoff = options.TopK > 0 && options.TopK < logits.Length ? logits.OrderByDescending(l => l).ElementAt(options.TopK - 1) : double.NegativeInfinity;
        double max = logits.Max();
        var weights = logits.Select(l => l < cutoff ? 0 : Math.Exp((l - max) / options.Temperature)).ToArray();
        double u = random.NextSingle() * weights.Sum();
        for (int i = 0; i < weights.Length; i++)
            if ((u -= weights[i]) < 0) return i;
        return Array.IndexOf(logits, (float)max);
    }

    [Fact]
    public void Top_p_draws_from_the_smallest_nucleus_in_proportion()
    {
        // softmax at T = 1 in float64, tokens by probability: 1, 6, 3, 4, ...; the nucleus for p = 0.6 is {1, 6}.
        var p = Logits.Select(l => Math.Exp(l)).ToArray();
        double sum = p.Sum();
        var order = Enumerable.Range(0, p.Length).OrderByDescending(i => p[i]).ToArray();
        Assert.True(p[order[0]] / sum < 0.6 && (p[order[0]] + p[order[1]]) / sum >= 0.6);
        double nucleus = p[order[0]] + p[order[1]];
        var sampler = new TokenSampler(Logits.Length);
        var random = new TrainingRandom(9);
        var counts = new int[Logits.Length];
        const int draws = 20000;
        for (int i = 0; i < draws; i++) counts[sampler.Sample(Logits, new SamplingOptions(Temperature: 1), 0.6f, ref random)]++;
        Assert.Equal(draws, counts[order[0]] + counts[order[1]]);
        Assert.InRange(counts[order[0]] / (double)draws, p[order[0]] / nucleus - 0.02, p[order[0]] / nucleus + 0.02);
    }

    [Fact]
    public void Bad_options_name_the_field()
    {
        Assert.Equal("topP", Assert.Throws<ArgumentOutOfRangeException>(() => TokenSampler.Validate(new SamplingOptions(), 1.5f)).ParamName);
        Assert.Equal("Temperature", Assert.Throws<ArgumentOutOfRangeException>(() => TokenSampler.Validate(new SamplingOptions(-1), 1f)).ParamName);
        var random = new TrainingRandom(1);
        Assert.Throws<ArgumentException>(() => new TokenSampler(4).Sample(Logits, new SamplingOptions(), 1f, ref random));
    }
}

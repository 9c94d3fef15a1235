using LoraRuntime.Layers.Text;
using LoraRuntime.Layers.Training;
using Xunit;

namespace LoraRuntime.Tests.Training;

public sealed class CharTokenizerTests
{
    [Fact]
    public void VocabularyIsTheSortedDistinctCharactersAndRoundTrips()
    {
        var tok = CharTokenizer.FromCorpus("hello, world\n");
        Assert.Equal("\n ,dehlorw", tok.Vocabulary);
        var ids = tok.Encode("low\n");
        Assert.Equal([6, 7, 9, 0], ids);
        Assert.Equal("low\n", tok.Decode(ids));
    }

    [Fact]
    public void UnknownCharactersAndIdsAreNamed()
    {
        var tok = CharTokenizer.FromCorpus("abc");
        var e = Assert.Throws<ArgumentException>(() => tok.Encode("abz"));
        Assert.Contains("'z' at position 2", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.Decode([0, 3]));
        Assert.Throws<ArgumentException>(() => new CharTokenizer("aba"));
        Assert.Throws<ArgumentException>(() => CharTokenizer.FromCorpus(""));
    }
}

public sealed class TrainingRandomTests
{
    [Fact]
    public void SameSeedSameStreamAndStateResumes()
    {
        var a = new TrainingRandom(42);
        var b = new TrainingRandom(42);
        for (int i = 0; i < 10; i++) Assert.Equal(a.NextUInt64(), b.NextUInt64());
        var saved = a.GetState();
        ulong next = a.NextUInt64();
        var resumed = TrainingRandom.FromState(saved);
        Assert.Equal(next, resumed.NextUInt64());
        Assert.NotEqual(new TrainingRandom(1).NextUInt64(), new TrainingRandom(2).NextUInt64());
    }

    [Fact]
    public void BoundedDrawsAreUniformAndInRange()
    {
        var r = new TrainingRandom(7);
        var counts = new int[10];
        for (int i = 0; i < 100_000; i++) counts[r.NextInt64(10)]++;
        Assert.All(counts, c => Assert.InRange(c, 9_500, 10_500));
        Assert.Throws<ArgumentOutOfRangeException>(() => r.NextInt64(0));
        Assert.Throws<ArgumentException>(() => TrainingRandom.FromState([0, 0, 0, 0]));
    }
}

public sealed class TokenBatchesTests
{
    [Fact]
    public void TargetsAreInputsShiftedByOne()
    {
        int[] tokens = Enumerable.Range(0, 1000).ToArray();
        var batches = new TokenBatches(tokens, 8);
        var random = new TrainingRandom(3);
        var x = new int[4 * 8];
        var y = new int[4 * 8];
        batches.Next(ref random, x, y);
        for (int row = 0; row < 4; row++)
            for (int t = 0; t < 8; t++)
            {
                Assert.Equal(x[row * 8] + t, x[row * 8 + t]);
                Assert.Equal(x[row * 8 + t] + 1, y[row * 8 + t]);
            }
    }

    [Fact]
    public void SplitKeepsTheFirstNinetyPercentForTraining()
    {
        int[] tokens = Enumerable.Range(0, 1000).ToArray();
        var (train, val) = TokenBatches.Split(tokens, 16);
        Assert.Equal(900, train.Length);
        Assert.Equal(100, val.Length);
        var random = new TrainingRandom(5);
        var x = new int[16];
        var y = new int[16];
        for (int i = 0; i < 200; i++)
        {
            val.Next(ref random, x, y);
            Assert.All(x, v => Assert.InRange(v, 900, 999));
            Assert.All(y, v => Assert.InRange(v, 901, 999));
        }
        Assert.Throws<ArgumentException>(() => TokenBatches.Split(tokens, 100, 0.95));
    }

    [Fact]
    public void DrawingABatchAllocatesNothing()
    {
        var batches = new TokenBatches(Enumerable.Range(0, 5000).ToArray(), 64);
        var random = new TrainingRandom(1);
        var x = new int[12 * 64];
        var y = new int[12 * 64];
        batches.Next(ref random, x, y);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++) batches.Next(ref random, x, y);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}

public sealed class LearningRateScheduleTests
{
    [Fact]
    public void MatchesTheReferenceRecipe()
    {
        // ../shared/anchors/torch_gpt_char.py: warm 100, lr 1e-3, min 1e-4, 2000 iterations.
        var s = new LearningRateSchedule(1e-3, 1e-4, 100, 2000);
        Assert.Equal(1e-3 * 1 / 101, s.RateAt(0), 12);
        Assert.Equal(1e-3 * 100 / 101, s.RateAt(99), 12);
        Assert.Equal(1e-3, s.RateAt(100), 12);
        Assert.Equal(1e-4 + 0.5 * (1 + Math.Cos(Math.PI * 0.5)) * 9e-4, s.RateAt(1050), 12);
        Assert.Equal(1e-4, s.RateAt(2000), 12);
        Assert.Equal(1e-4, s.RateAt(5000), 12);
        Assert.Throws<ArgumentOutOfRangeException>(() => new LearningRateSchedule(1e-3, 2e-3, 10, 100));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LearningRateSchedule(double.NaN, 0, 10, 100));
    }
}

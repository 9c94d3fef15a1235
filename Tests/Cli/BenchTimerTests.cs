using LoraRuntime.Cli.Bench;
using Xunit;

namespace LoraRuntime.Tests.Cli;

public sealed class BenchTimerTests
{
    [Fact]
    public void The_median_of_an_odd_count_is_the_middle_value()
    {
        Assert.Equal(3.0, BenchTimer.Median([5.0, 1.0, 3.0, 100.0, 2.0]));
        Assert.Equal(7.0, BenchTimer.Median([7.0]));
    }

    [Fact]
    public void The_median_of_an_even_count_is_the_mean_of_the_middle_two() =>
        Assert.Equal(2.5, BenchTimer.Median([4.0, 1.0, 2.0, 3.0]));

    [Fact]
    public void The_median_of_nothing_is_NaN() => Assert.True(double.IsNaN(BenchTimer.Median([])));

    [Fact]
    public void Fixed_reps_run_warmup_plus_reps_times_with_a_sync_after_each()
    {
        int runs = 0, syncs = 0;
        var timing = BenchTimer.Measure(() => runs++, () => syncs++, warmup: 2, reps: 3);
        Assert.Equal(5, runs);
        Assert.Equal(5, syncs);
        Assert.Equal(3, timing.Reps);
        Assert.True(timing.MedianMs >= timing.MinMs);
    }

    [Fact]
    public void Automatic_reps_fill_the_target_time_and_do_at_least_five()
    {
        int runs = 0;
        var timing = BenchTimer.Measure(() => { runs++; Thread.Sleep(2); }, () => { }, warmup: 0, reps: null, targetSeconds: 0.001);
        Assert.Equal(BenchTimer.MinAutoReps, timing.Reps);
        Assert.Equal(1 + BenchTimer.MinAutoReps, runs); // one calibration run without warm-up
        Assert.True(timing.MedianMs >= 1.5);
    }

    [Fact]
    public void Interleaved_cases_alternate_round_by_round_with_their_setup_before_each_run()
    {
        var log = new List<string>();
        var timings = BenchTimer.MeasureInterleaved(
            [(() => log.Add("setup a"), () => log.Add("a")), (() => log.Add("setup b"), () => { log.Add("b"); Thread.Sleep(2); })],
            () => { }, warmup: 1, reps: 2);
        Assert.Equal(Enumerable.Repeat(new[] { "setup a", "a", "setup b", "b" }, 3).SelectMany(r => r), log);
        Assert.Equal([2, 2], timings.Select(t => t.Reps));
        Assert.True(timings[1].MedianMs > timings[0].MedianMs);
    }

    [Theory]
    [InlineData(1.0, 0.75, 750)]
    [InlineData(1000.0, 0.75, BenchTimer.MinAutoReps)]
    [InlineData(0.0, 0.75, BenchTimer.MaxAutoReps)]
    public void Auto_reps_are_the_target_over_the_estimate_clamped(double estimateMs, double target, int expected) =>
        Assert.Equal(expected, BenchTimer.AutoReps(estimateMs, target));
}

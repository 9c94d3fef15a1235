using LoraRuntime.Distributed;
using LoraRuntime.Layers.Training;
using Xunit;

namespace LoraRuntime.Tests.Distributed;

/// <summary>How a global batch is shared by ranks, and what the launcher's variables say.</summary>
public sealed class BatchShardTests
{
    [Theory]
    [InlineData(12, 1)]
    [InlineData(12, 2)]
    [InlineData(12, 5)]
    [InlineData(7, 7)]
    [InlineData(1000, 3)]
    public void The_ranks_shares_cover_the_batch_once_in_order_and_weigh_one_in_all(int rows, int ranks)
    {
        var shards = Enumerable.Range(0, ranks).Select(r => BatchShard.Of(rows, r, ranks)).ToArray();
        Assert.Equal(0, shards[0].FirstRow);
        for (int r = 1; r < ranks; r++) Assert.Equal(shards[r - 1].FirstRow + shards[r - 1].Rows, shards[r].FirstRow);
        Assert.Equal(rows, shards.Sum(s => s.Rows));
        Assert.All(shards, s => Assert.InRange(s.Rows, rows / ranks, rows / ranks + 1));
        Assert.Equal(1.0, shards.Sum(s => s.Weight), 12);
        Assert.Equal(ranks == 1, shards[0].IsWhole);
    }

    [Fact]
    public void A_batch_smaller_than_the_ranks_or_a_bad_rank_is_refused_by_name()
    {
        Assert.Contains("2 sequences cannot be shared by 3 ranks", Assert.Throws<ArgumentException>("batch", () => BatchShard.Of(2, 0, 3)).Message);
        Assert.Throws<ArgumentOutOfRangeException>("rank", () => BatchShard.Of(8, 2, 2));
        Assert.Throws<ArgumentOutOfRangeException>("ranks", () => BatchShard.Of(8, 0, 0));
    }

    [Fact]
    public void Each_rank_draws_its_rows_of_the_batch_one_process_draws_and_the_sampler_moves_alike()
    {
        var tokens = Enumerable.Range(0, 5000).Select(i => i % 251).ToArray();
        var batches = new TokenBatches(tokens, 16);
        const int rows = 7, ranks = 3;
        var random = new TrainingRandom(42);
        int[] inputs = new int[rows * 16], targets = new int[rows * 16];
        batches.Next(ref random, inputs, targets);
        ulong[] after = random.GetState();
        for (int rank = 0; rank < ranks; rank++)
        {
            var shard = BatchShard.Of(rows, rank, ranks);
            var mine = new TrainingRandom(42);
            int[] x = new int[shard.Rows * 16], y = new int[shard.Rows * 16];
            batches.Next(ref mine, x, y, shard);
            Assert.Equal(inputs.AsSpan(shard.FirstRow * 16, shard.Rows * 16).ToArray(), x);
            Assert.Equal(targets.AsSpan(shard.FirstRow * 16, shard.Rows * 16).ToArray(), y);
            Assert.Equal(after, mine.GetState());
        }
        var wrong = new TrainingRandom(42);
        Assert.Throws<ArgumentException>("inputs", () => batches.Next(ref wrong, new int[48], new int[48], BatchShard.Of(rows, 0, ranks))); // 3 rows, not 2
    }

    [Fact]
    public void The_launch_is_read_from_open_mpi_and_pmix_variables_and_absent_otherwise()
    {
        var mpirun = DistributedLaunch.Detect(name => name switch
        {
            "OMPI_COMM_WORLD_SIZE" => "4", "OMPI_COMM_WORLD_RANK" => "3", "OMPI_COMM_WORLD_LOCAL_SIZE" => "2", _ => null,
        });
        Assert.Equal(new DistributedLaunch(true, 4, 3, 2, "OMPI_COMM_WORLD_SIZE=4"), mpirun);
        var pmix = DistributedLaunch.Detect(name => name == "PMIX_RANK" ? "5" : null);
        Assert.True(pmix.ByLauncher);
        Assert.Equal(5, pmix.Rank);
        var none = DistributedLaunch.Detect(_ => null);
        Assert.False(none.ByLauncher);
        Assert.Equal((1, 0, 1), (none.Size, none.Rank, none.LocalSize));
        // Nonsense is not a job of 0 or −1 ranks.
        Assert.Equal(1, DistributedLaunch.Detect(name => name == "OMPI_COMM_WORLD_SIZE" ? "x" : null).Size);
    }

    [Fact]
    public void One_process_is_a_world_of_one_whose_collectives_change_nothing()
    {
        var world = Communicator.SingleProcess;
        Assert.Equal((0, 1, false, "none"), (world.Rank, world.Size, world.IsDistributed, world.Transport));
        Span<double> values = [1.5, -2];
        world.AllReduceSum(values);
        Assert.Equal([1.5, -2], values.ToArray());
        using var backend = new LoraRuntime.Cpu.CpuBackend();
        using var tensor = backend.FromArray([3f, 4f], 2);
        world.AllReduceSum(tensor);
        Assert.Equal([3f, 4f], tensor.ToArray());
        using var ids = backend.Allocate(DType.I32, new Shape(2));
        Assert.Throws<ArgumentException>("values", () => world.AllReduceSum(ids));
        Assert.Throws<ArgumentOutOfRangeException>("root", () => world.Broadcast(new byte[2], 1));
    }
}

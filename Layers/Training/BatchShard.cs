namespace LoraRuntime.Layers.Training;

/// <summary>
/// One rank's rows of a global batch of <see cref="GlobalRows"/> sequences: rows [<see cref="FirstRow"/>,
/// FirstRow + <see cref="Rows"/>). Every rank draws the whole batch from the same sampler and keeps its rows, so the
/// batches, and with <see cref="Weight"/> the loss and the gradients, do not depend on the number of ranks. Rows are
/// spread as evenly as they go: rank r of N takes [⌊r·B/N⌋, ⌊(r+1)·B/N⌋).
/// </summary>
/// <param name="GlobalRows">B, the sequences of the whole batch.</param>
/// <param name="FirstRow">The first row this rank takes.</param>
/// <param name="Rows">How many rows this rank takes (≥ 1).</param>
internal readonly record struct BatchShard(int GlobalRows, int FirstRow, int Rows)
{
    /// <summary>The whole batch, for one process.</summary>
    public static BatchShard Whole(int rows) => new(rows, 0, rows);

    /// <summary>Rank <paramref name="rank"/>'s rows of a batch of <paramref name="globalRows"/> split over <paramref name="ranks"/> ranks.</summary>
    public static BatchShard Of(int globalRows, int rank, int ranks)
    {
        if (ranks < 1) throw new ArgumentOutOfRangeException(nameof(ranks), ranks, "ranks: expected ≥ 1");
        if (rank < 0 || rank >= ranks) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"rank: expected 0..{ranks - 1}");
        if (globalRows < ranks)
            throw new ArgumentException($"batch: {globalRows} sequences cannot be shared by {ranks} ranks; each rank needs at least one (give --batch ≥ {ranks})", "batch");
        int first = (int)((long)rank * globalRows / ranks), end = (int)((long)(rank + 1) * globalRows / ranks);
        return new BatchShard(globalRows, first, end - first);
    }

    /// <summary>Rows / GlobalRows: the share of this rank's mean in the batch's mean.</summary>
    public double Weight => Rows / (double)GlobalRows;

    /// <summary>True when this rank takes every row.</summary>
    public bool IsWhole => Rows == GlobalRows;
}

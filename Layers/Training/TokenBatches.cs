namespace LoraRuntime.Layers.Training;

/// <summary>
/// Random (input, target) windows from a token stream, nanoGPT's way: each of B rows starts at a uniform offset,
/// inputs are T tokens and targets the same T shifted by one. Batches are written into caller buffers (the
/// model's reserved id tensors), so drawing one allocates nothing.
/// </summary>
internal sealed class TokenBatches
{
    private readonly int[] _tokens;

    /// <summary>Batches over <paramref name="tokens"/>; it must hold more than <paramref name="blockSize"/> tokens.</summary>
    public TokenBatches(int[] tokens, int blockSize)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        if (blockSize <= 0) throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, "blockSize must be > 0");
        if (tokens.Length <= blockSize)
            throw new ArgumentException($"tokens: need more than blockSize = {blockSize} tokens for one window; got {tokens.Length}", nameof(tokens));
        _tokens = tokens;
        BlockSize = blockSize;
    }

    /// <summary>T, the window length.</summary>
    public int BlockSize { get; }

    /// <summary>Number of tokens.</summary>
    public int Length => _tokens.Length;

    /// <summary>
    /// The first <paramref name="trainFraction"/> of the tokens and the rest, as two batch sources (the split is
    /// at a token boundary, the validation part keeps at least one window).
    /// </summary>
    public static (TokenBatches Train, TokenBatches Validation) Split(int[] tokens, int blockSize, double trainFraction = 0.9)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        if (!(trainFraction > 0 && trainFraction < 1))
            throw new ArgumentOutOfRangeException(nameof(trainFraction), trainFraction, "trainFraction must be in (0, 1)");
        int cut = (int)(tokens.Length * trainFraction);
        if (cut <= blockSize || tokens.Length - cut <= blockSize)
            throw new ArgumentException(
                $"tokens: {tokens.Length} tokens split at {trainFraction:P0} leave {cut} and {tokens.Length - cut}; each part needs more than blockSize = {blockSize}", nameof(tokens));
        return (new TokenBatches(tokens[..cut], blockSize), new TokenBatches(tokens[cut..], blockSize));
    }

    /// <summary>Fills B = inputs.Length / T rows of inputs and targets from random offsets drawn from <paramref name="random"/>.</summary>
    public void Next(ref TrainingRandom random, Span<int> inputs, Span<int> targets) =>
        Next(ref random, inputs, targets, BatchShard.Whole(RowsOf(inputs, targets)));

    /// <summary>
    /// Draws the offsets of all <see cref="BatchShard.GlobalRows"/> rows of a batch from <paramref name="random"/> and
    /// fills inputs and targets with the <paramref name="shard"/>'s rows: every rank advances the sampler alike.
    /// </summary>
    public void Next(ref TrainingRandom random, Span<int> inputs, Span<int> targets, BatchShard shard)
    {
        int t = BlockSize;
        int rows = RowsOf(inputs, targets);
        if (rows != shard.Rows)
            throw new ArgumentException($"inputs: {rows} rows do not match the shard's {shard.Rows}", nameof(inputs));
        for (int row = 0; row < shard.GlobalRows; row++)
        {
            int start = (int)random.NextInt64(_tokens.Length - t);
            int local = row - shard.FirstRow;
            if (local < 0 || local >= rows) continue;
            _tokens.AsSpan(start, t).CopyTo(inputs.Slice(local * t, t));
            _tokens.AsSpan(start + 1, t).CopyTo(targets.Slice(local * t, t));
        }
    }

    private int RowsOf(Span<int> inputs, Span<int> targets)
    {
        int t = BlockSize;
        if (inputs.Length != targets.Length || inputs.Length == 0 || inputs.Length % t != 0)
            throw new ArgumentException(
                $"inputs and targets must be the same non-zero multiple of blockSize = {t}; got {inputs.Length} and {targets.Length}", nameof(inputs));
        return inputs.Length / t;
    }
}

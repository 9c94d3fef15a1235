using LoraRuntime.Layers.Serving;

namespace LoraRuntime.Hosting;

/// <summary>
/// The engine's forward pass: one KV-cache slot of the decoder that the scheduler leaves alone, with the tokens it holds.
/// A call whose tokens begin with the cached ones (same adapter, same scale) runs only what follows them — at least the
/// last token, whose logits are wanted — so a forward of a sequence one token longer than the last is one decode step.
/// Longer runs are prefilled in chunks of the decoder's step size. Allocation-free; the caller serialises calls (the
/// scheduler's step lock).
/// </summary>
internal sealed class PrefixForward
{
    private readonly KvCacheDecoder _decoder;
    private readonly int _slot;
    private readonly DecodeRow[] _row = new DecodeRow[1];
    private readonly int[] _cached;
    private int _cachedLength, _adapterId = -1;
    private float _scale;

    public PrefixForward(KvCacheDecoder decoder, int slot)
    {
        _decoder = decoder;
        _slot = slot;
        _cached = new int[decoder.BlockSize];
    }

    /// <summary>Forgets what the slot holds (after the model's weights changed, the cached keys and values are stale).</summary>
    public void Forget()
    {
        _cachedLength = 0;
        _adapterId = -1;
    }

    /// <summary>Tokens the last run found in the cache and did not recompute.</summary>
    public int Reused { get; private set; }

    /// <summary>
    /// logits [V] = the model's logits after <paramref name="tokens"/> (1 to T valid ids) with <paramref name="adapter"/>
    /// (resident, pinned) at <paramref name="scale"/> times its scale.
    /// </summary>
    public void Run(ReadOnlySpan<int> tokens, Span<float> logits, ServedAdapter? adapter, float scale)
    {
        int n = tokens.Length, start = 0, id = adapter?.Id ?? 0;
        if (id == _adapterId && (adapter is null || scale.Equals(_scale)))
        {
            int limit = Math.Min(_cachedLength, n - 1);
            while (start < limit && _cached[start] == tokens[start]) start++;
        }
        // What follows start is about to be overwritten: forget it first, so that a failure leaves a true prefix.
        _cachedLength = start;
        _adapterId = id;
        _scale = scale;
        for (int position = start; position < n;)
        {
            int count = Math.Min(n - position, _decoder.MaxStepTokens);
            _row[0] = new DecodeRow(_slot, position, count, adapter, scale);
            _decoder.Forward(_row, tokens.Slice(position, count), logits);
            position += count;
        }
        tokens[start..].CopyTo(_cached.AsSpan(start));
        _cachedLength = n;
        Reused = start;
    }
}

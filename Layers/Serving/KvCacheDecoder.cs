using LoraRuntime.Layers.Inference;

namespace LoraRuntime.Layers.Serving;

/// <summary>
/// One sequence's part of a <see cref="KvCacheDecoder"/> step: <see cref="Count"/> tokens at positions
/// [<see cref="Start"/>, <see cref="Start"/> + <see cref="Count"/>) of KV-cache slot <see cref="Slot"/>, run with
/// <see cref="Adapter"/> (null: the base model) at <see cref="Scale"/> times the scale it was loaded with (1: as loaded,
/// 0: the base model). A prefill has Start = 0 and the prompt (or a chunk of it); a decode step has Count = 1.
/// </summary>
internal readonly record struct DecodeRow(int Slot, int Start, int Count, ServedAdapter? Adapter, float Scale = 1f);

/// <summary>
/// Serving steps over a <see cref="GptModel"/> with a KV cache of <see cref="Slots"/> sequences, where every row of a step
/// may use a different adapter. A step takes any mix of prefills (chunks) and decode rows; the decoder validates it,
/// orders the rows by adapter (so that each adapter's rows are contiguous for the segmented LoRA GEMMs), fills the step
/// context (<see cref="InferenceStep"/>) and runs the model's own layers over it (<see cref="GptModel.Infer"/>): the
/// arithmetic is the layers', the decoder only drives them. All memory — the cache, the step's scratch — is taken at
/// construction, and the model's inference snapshot (its packed weights) is taken here too and re-taken by
/// <see cref="RefreshWeights"/> after the model's weights change. A step at a steady shape allocates nothing. Not
/// thread-safe: one step at a time (a concurrent call is refused).
/// </summary>
internal sealed class KvCacheDecoder : IDisposable
{
    private readonly GptModel _model;
    private readonly KvCache _cache;
    private readonly InferenceStep _step;
    private readonly int[] _order, _inputStart;
    private readonly bool[] _slotUsed;
    private int _busy;

    /// <summary>
    /// A decoder over <paramref name="layout"/>'s model with <paramref name="slots"/> cache slots of
    /// <paramref name="maxSequence"/> positions each (null: the model's block size), steps of up to
    /// <paramref name="maxStepTokens"/> tokens, and adapters of rank up to <paramref name="maxRank"/>.
    /// </summary>
    public KvCacheDecoder(ServingLayout layout, int slots, int maxStepTokens = 256, int maxRank = 64, int? maxSequence = null)
    {
        ArgumentNullException.ThrowIfNull(layout);
        Guard.Positive(slots, nameof(slots));
        Guard.Positive(maxStepTokens, nameof(maxStepTokens));
        Guard.Positive(maxRank, nameof(maxRank));
        if (maxStepTokens < slots)
            throw new ArgumentOutOfRangeException(nameof(maxStepTokens), maxStepTokens, $"maxStepTokens: a step must fit one token per slot, so ≥ slots = {slots}; got {maxStepTokens}");
        int blockSize = layout.Model.Config.BlockSize;
        if (maxSequence is { } m && (m < 1 || m > blockSize))
            throw new ArgumentOutOfRangeException(nameof(maxSequence), m, $"maxSequence: expected 1 to the model's block size {blockSize}; got {m}");
        ModelMemory.CheckDecoder(layout.Model.Parameters.Backend, layout.Model.Config, slots, maxStepTokens, maxRank, maxSequence ?? blockSize);
        Layout = layout;
        _model = layout.Model;
        var config = _model.Config;
        Slots = slots;
        MaxStepTokens = maxStepTokens;
        MaxRank = maxRank;
        _cache = new KvCache(_model.Parameters.Backend, config.Layers, slots, maxSequence ?? blockSize, config.KvHeads * config.HeadDim);
        try
        {
            _step = new InferenceStep(_model, _cache, maxStepTokens, maxRank);
            _model.PrepareInference();
        }
        catch
        {
            _step?.Dispose();
            _cache.Dispose();
            throw;
        }
        _order = new int[slots];
        _inputStart = new int[slots];
        _slotUsed = new bool[slots];
    }

    /// <summary>The model's layout (and through it, the weights served).</summary>
    public ServingLayout Layout { get; }

    /// <summary>S, the sequences the cache holds.</summary>
    public int Slots { get; }

    /// <summary>The most tokens one step may carry.</summary>
    public int MaxStepTokens { get; }

    /// <summary>The largest adapter rank the scratch holds.</summary>
    public int MaxRank { get; }

    /// <summary>T, the longest sequence a slot holds (the model's block size unless reserved shorter).</summary>
    public int BlockSize => _cache.MaxSequence;

    /// <summary>V.</summary>
    public int Vocabulary => _model.Config.Vocabulary;

    /// <summary>Bytes held from the pool for the cache and the scores, and by the model's packed inference snapshot.</summary>
    public long Bytes => _cache.Bytes + _step.Scores.Length * sizeof(float) + _model.InferenceBytes;

    /// <summary>Re-takes the model's inference snapshot (its packed weights): call it after changing the weights.</summary>
    public void RefreshWeights() => _model.PrepareInference();

    /// <summary>
    /// Runs one step: row i feeds its <see cref="DecodeRow.Count"/> tokens (taken in row order from
    /// <paramref name="tokens"/>) into its slot at its positions, and writes the logits of its last token to
    /// <paramref name="logits"/>[i·V, (i + 1)·V). Rows name distinct slots; each adapter must be resident (pinned in its
    /// bank). Positions before <see cref="DecodeRow.Start"/> must hold this sequence's earlier tokens (from earlier steps).
    /// </summary>
    public void Forward(ReadOnlySpan<DecodeRow> rows, ReadOnlySpan<int> tokens, Span<float> logits)
    {
        if (Interlocked.Exchange(ref _busy, 1) != 0)
            throw new InvalidOperationException("KvCacheDecoder: a step is already running; one step at a time (the scheduler serialises callers)");
        try
        {
            Validate(rows, tokens, logits);
            Prepare(rows, tokens);
            _model.Infer(_step, logits);
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>Returns every block to the pool (the model keeps its inference snapshot until it is disposed).</summary>
    public void Dispose()
    {
        _step.Dispose();
        _cache.Dispose();
    }

    private void Validate(ReadOnlySpan<DecodeRow> rows, ReadOnlySpan<int> tokens, Span<float> logits)
    {
        if (rows.Length < 1 || rows.Length > Slots)
            throw new ArgumentException($"rows: expected 1 to S = {Slots} rows; got {rows.Length}", nameof(rows));
        Array.Clear(_slotUsed);
        int total = 0, tmax = BlockSize, v = Vocabulary;
        for (int i = 0; i < rows.Length; i++)
        {
            var row = rows[i];
            if ((uint)row.Slot >= (uint)Slots)
                throw new ArgumentOutOfRangeException(nameof(rows), row.Slot, $"rows[{i}].Slot: expected a slot in [0, {Slots}); got {row.Slot}");
            if (_slotUsed[row.Slot]) throw new ArgumentException($"rows[{i}].Slot: slot {row.Slot} appears twice in one step", nameof(rows));
            _slotUsed[row.Slot] = true;
            if (row.Start < 0 || row.Count < 1 || row.Start + row.Count > tmax)
                throw new ArgumentOutOfRangeException(nameof(rows), row.Count,
                    $"rows[{i}]: expected Start ≥ 0, Count ≥ 1 and Start + Count ≤ T = {tmax} (the longest sequence reserved); got Start = {row.Start}, Count = {row.Count}");
            if (!float.IsFinite(row.Scale))
                throw new ArgumentOutOfRangeException(nameof(rows), row.Scale, $"rows[{i}].Scale: expected a finite multiplier of the adapter's scale; got {row.Scale}");
            if (row.Adapter is { } a && (a.Device is null || a.ProjectionCount != _model.Linears.Count || a.MaxRank > MaxRank))
                throw new ArgumentException(
                    $"rows[{i}].Adapter: {a} must be resident (acquired from the bank of this model) with R ≤ {MaxRank}", nameof(rows));
            total += row.Count;
        }
        if (total > MaxStepTokens)
            throw new ArgumentException($"rows: the step carries {total} tokens; at most {MaxStepTokens} fit (maxStepTokens)", nameof(rows));
        if (tokens.Length != total)
            throw new ArgumentException($"tokens: expected {total} tokens (the rows' counts summed); got {tokens.Length}", nameof(tokens));
        foreach (int id in tokens)
            if ((uint)id >= (uint)v) throw new ArgumentOutOfRangeException(nameof(tokens), id, $"tokens: id {id} is outside [0, V = {v})");
        if (logits.Length < (long)rows.Length * v)
            throw new ArgumentException($"logits: expected room for {rows.Length}·V = {(long)rows.Length * v} values; got {logits.Length}", nameof(logits));
    }

    /// <summary>Orders the rows by adapter (stable) and fills the step with their tokens in that order.</summary>
    private void Prepare(ReadOnlySpan<DecodeRow> rows, ReadOnlySpan<int> tokens)
    {
        int count = rows.Length;
        for (int i = 0, s = 0; i < count; s += rows[i].Count, i++) _inputStart[i] = s;
        for (int i = 0; i < count; i++)
        {
            int key = AdapterKey(rows[i]), j = i;
            while (j > 0 && AdapterKey(rows[_order[j - 1]]) > key)
            {
                _order[j] = _order[j - 1];
                j--;
            }
            _order[j] = i;
        }
        _step.Clear();
        for (int k = 0; k < count; k++)
        {
            int i = _order[k];
            var row = rows[i];
            _step.Add(row.Slot, row.Start, tokens.Slice(_inputStart[i], row.Count), row.Adapter, row.Scale, outputRow: i);
        }
        _step.Upload();
    }

    private static int AdapterKey(in DecodeRow row) => row.Adapter?.Id ?? -1;
}

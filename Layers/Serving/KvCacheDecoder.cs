namespace LoraRuntime.Layers.Serving;

/// <summary>
/// One sequence's part of a <see cref="KvCacheDecoder"/> step: <see cref="Count"/> tokens at positions
/// [<see cref="Start"/>, <see cref="Start"/> + <see cref="Count"/>) of KV-cache slot <see cref="Slot"/>, run with
/// <see cref="Adapter"/> (null: the base model) at <see cref="Scale"/> times the scale it was loaded with (1: as loaded,
/// 0: the base model). A prefill has Start = 0 and the prompt (or a chunk of it); a decode step has Count = 1.
/// </summary>
internal readonly record struct DecodeRow(int Slot, int Start, int Count, ServedAdapter? Adapter, float Scale = 1f);

/// <summary>
/// Inference for a <see cref="GptModel"/>'s weights with a KV cache of <see cref="Slots"/> sequences, where every row of a
/// step may use a different adapter. A step takes any mix of prefills (chunks) and decode rows, runs each projection once
/// over all the step's tokens (with the adapters' deltas as segmented GEMMs, <see cref="SegmentedLora"/>), attends each
/// row to its own cache (scores with the causal mask offset by the cached length), and returns the logits of each row's
/// last token. All memory — cache [L, 2, S, T, C], activations for <see cref="MaxStepTokens"/> tokens, scores — is taken
/// at construction; a step at a steady shape allocates nothing. The training layers are not used or changed: layer norms,
/// biases and embeddings are read from the model's parameters, while each projection weight W [OC, C] (and the tied head)
/// is held as a <see cref="PackedMatrix"/> of Wᵀ [C, OC], so that every projection is a packed GEMM: on the CPU the
/// weights stream from memory as the micro-kernel's panels, never packed again per step (a decode batch's product
/// is as fast with the weights cold in memory as a plain GEMM with them hot in cache; <c>lora bench gemm --packed</c>),
/// and a lone request's one-row step reads them once as GEMV columns. That copy is a snapshot:
/// <see cref="RefreshWeights"/> re-reads it after the model's weights change (a merge). Not thread-safe: one step at a
/// time (a concurrent call is refused).
/// </summary>
internal sealed class KvCacheDecoder : IDisposable
{
    private readonly Backend _backend;
    private readonly GptModel _model;
    private readonly int _c, _nh, _hs, _v, _tmax, _layers;
    private readonly float _scoreScale;
    private readonly Tensor _cache, _scores;
    private readonly PackedMatrix _head; // wteᵀ [C, V]
    private readonly PackedMatrix[] _weights; // per projection: Wᵀ [C, OC]
    private readonly Tensor[] _decodeScores; // [decode row d · T + len − 1]: views [NH, 1, len]
    private readonly Dictionary<long, Tensor> _prefillScores = []; // [n · (T + 1) + len]: views [NH, n, len] of the prefill region
    private readonly RowBuffer _ids, _positions, _tok, _pos, _x, _ln, _mean, _rstd, _qkv, _y, _attn, _residual, _hidden, _activated, _mlp;
    private readonly RowBuffer _last, _lastLn, _lastMean, _lastRstd, _logits;
    private readonly SegmentedLora _lora;
    private readonly int[] _order, _tokenStart, _hostIds, _hostPositions, _decodeSorted;
    private readonly DecodeAttentionRow[] _decodeRows;
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
        Layout = layout;
        _model = layout.Model;
        _backend = _model.Parameters.Backend;
        var config = _model.Config;
        (_c, _nh, _v, _tmax, _layers) = (config.Channels, config.Heads, config.Vocabulary, maxSequence ?? blockSize, config.Layers);
        _hs = _c / _nh;
        _scoreScale = 1 / MathF.Sqrt(_hs);
        Slots = slots;
        MaxStepTokens = maxStepTokens;
        MaxRank = maxRank;
        var owned = new List<IDisposable>();
        try
        {
            RowBuffer Rows(int maxRows, int width, DType dtype = DType.F32)
            {
                var b = new RowBuffer(_backend, maxRows, width, dtype);
                owned.Add(b);
                return b;
            }
            int n = maxStepTokens, c = _c;
            _ids = Rows(n, 1, DType.I32);
            _positions = Rows(n, 1, DType.I32);
            (_tok, _pos, _x, _ln, _y, _attn, _residual, _mlp) = (Rows(n, c), Rows(n, c), Rows(n, c), Rows(n, c), Rows(n, c), Rows(n, c), Rows(n, c), Rows(n, c));
            (_mean, _rstd, _qkv, _hidden, _activated) = (Rows(n, 1), Rows(n, 1), Rows(n, 3 * c), Rows(n, 4 * c), Rows(n, 4 * c));
            (_last, _lastLn, _lastMean, _lastRstd, _logits) = (Rows(slots, c), Rows(slots, c), Rows(slots, 1), Rows(slots, 1), Rows(slots, _v));
            _cache = _backend.Zeros(DType.F32, new Shape(_layers * 2, slots, _tmax, c));
            owned.Add(_cache);
            // Decode rows take fixed regions of NH·T scores; prefill rows (attended one after another) share what follows, up to NH·n·T.
            _scores = _backend.Zeros(DType.F32, new Shape((int)((long)_nh * _tmax * (slots + n))));
            owned.Add(_scores);
            _lora = new SegmentedLora(_backend, n, maxRank, slots);
            owned.Add(_lora);
            _weights = new PackedMatrix[layout.Linears.Count];
            for (int i = 0; i < _weights.Length; i++) owned.Add(_weights[i] = _backend.PackMatrix(layout.Linears[i].Weight.Value, LoraRuntime.Transpose.Yes));
            owned.Add(_head = _backend.PackMatrix(_model.TokenEmbedding.Table.Value, LoraRuntime.Transpose.Yes));
        }
        catch
        {
            foreach (var d in owned) d.Dispose();
            throw;
        }
        _decodeScores = new Tensor[slots * _tmax];
        for (int d = 0; d < slots; d++)
            for (int len = 1; len <= _tmax; len++)
                _decodeScores[d * _tmax + len - 1] = _scores.View((long)d * _nh * _tmax, new Shape(_nh, 1, len));
        _order = new int[slots];
        _decodeRows = new DecodeAttentionRow[slots];
        _decodeSorted = new int[slots];
        _tokenStart = new int[slots];
        _slotUsed = new bool[slots];
        _hostIds = new int[maxStepTokens];
        _hostPositions = new int[maxStepTokens];
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
    public int BlockSize => _tmax;

    /// <summary>V.</summary>
    public int Vocabulary => _v;

    /// <summary>Bytes the decoder holds from the pool for the cache, the scores and the packed weights.</summary>
    public long Bytes => (_cache.Length + _scores.Length) * sizeof(float) + _head.Bytes + _weights.Sum(w => w.Bytes);

    /// <summary>Packs the model's projection weights (and the head) into the decoder's snapshot again: call it after changing them.</summary>
    public void RefreshWeights()
    {
        for (int i = 0; i < _weights.Length; i++) _backend.Repack(_weights[i], Layout.Linears[i].Weight.Value, LoraRuntime.Transpose.Yes);
        _backend.Repack(_head, _model.TokenEmbedding.Table.Value, LoraRuntime.Transpose.Yes);
    }

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
            int total = Validate(rows, tokens, logits);
            Prepare(rows, tokens, total);
            for (int l = 0; l < _layers; l++) Block(l, rows, total);
            Head(rows, logits);
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>Returns every block to the pool.</summary>
    public void Dispose()
    {
        foreach (var b in new[] { _ids, _positions, _tok, _pos, _x, _ln, _mean, _rstd, _qkv, _y, _attn, _residual, _hidden, _activated, _mlp,
                     _last, _lastLn, _lastMean, _lastRstd, _logits })
            b.Dispose();
        _cache.Dispose();
        _scores.Dispose();
        _lora.Dispose();
        foreach (var w in _weights) w.Dispose();
        _head.Dispose();
    }

    private int Validate(ReadOnlySpan<DecodeRow> rows, ReadOnlySpan<int> tokens, Span<float> logits)
    {
        if (rows.Length < 1 || rows.Length > Slots)
            throw new ArgumentException($"rows: expected 1 to S = {Slots} rows; got {rows.Length}", nameof(rows));
        Array.Clear(_slotUsed);
        int total = 0;
        for (int i = 0; i < rows.Length; i++)
        {
            var row = rows[i];
            if ((uint)row.Slot >= (uint)Slots)
                throw new ArgumentOutOfRangeException(nameof(rows), row.Slot, $"rows[{i}].Slot: expected a slot in [0, {Slots}); got {row.Slot}");
            if (_slotUsed[row.Slot]) throw new ArgumentException($"rows[{i}].Slot: slot {row.Slot} appears twice in one step", nameof(rows));
            _slotUsed[row.Slot] = true;
            if (row.Start < 0 || row.Count < 1 || row.Start + row.Count > _tmax)
                throw new ArgumentOutOfRangeException(nameof(rows), row.Count,
                    $"rows[{i}]: expected Start ≥ 0, Count ≥ 1 and Start + Count ≤ T = {_tmax} (the longest sequence reserved); got Start = {row.Start}, Count = {row.Count}");
            if (!float.IsFinite(row.Scale))
                throw new ArgumentOutOfRangeException(nameof(rows), row.Scale, $"rows[{i}].Scale: expected a finite multiplier of the adapter's scale; got {row.Scale}");
            if (row.Adapter is { } a && (a.Device is null || a.Modules.Length != Layout.Linears.Count * ServingLayout.KindsPerLinear || a.MaxRank > MaxRank))
                throw new ArgumentException(
                    $"rows[{i}].Adapter: {a} must be resident (acquired from the bank of this model) with R ≤ {MaxRank}", nameof(rows));
            total += row.Count;
        }
        if (total > MaxStepTokens)
            throw new ArgumentException($"rows: the step carries {total} tokens; at most {MaxStepTokens} fit (maxStepTokens)", nameof(rows));
        if (tokens.Length != total)
            throw new ArgumentException($"tokens: expected {total} tokens (the rows' counts summed); got {tokens.Length}", nameof(tokens));
        foreach (int id in tokens)
            if ((uint)id >= (uint)_v) throw new ArgumentOutOfRangeException(nameof(tokens), id, $"tokens: id {id} is outside [0, V = {_v})");
        if (logits.Length < (long)rows.Length * _v)
            throw new ArgumentException($"logits: expected room for {rows.Length}·V = {(long)rows.Length * _v} values; got {logits.Length}", nameof(logits));
        return total;
    }

    /// <summary>Orders the rows by adapter (stable), lays their tokens out in that order, and embeds them.</summary>
    private void Prepare(ReadOnlySpan<DecodeRow> rows, ReadOnlySpan<int> tokens, int total)
    {
        int count = rows.Length;
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
        // The input offset of each row's tokens in row order, then the sorted layout.
        Span<int> inputStart = stackalloc int[count];
        for (int i = 0, s = 0; i < count; s += rows[i].Count, i++) inputStart[i] = s;
        _lora.Clear();
        int at = 0;
        for (int k = 0; k < count; k++)
        {
            var row = rows[_order[k]];
            _tokenStart[k] = at;
            tokens.Slice(inputStart[_order[k]], row.Count).CopyTo(_hostIds.AsSpan(at));
            for (int t = 0; t < row.Count; t++) _hostPositions[at + t] = row.Start + t;
            _lora.Add(row.Adapter, row.Scale, at, row.Count);
            at += row.Count;
        }
        Tensor ids = _ids.Rows(total), positions = _positions.Rows(total);
        _backend.Upload(ids, _hostIds.AsSpan(0, total));
        _backend.Upload(positions, _hostPositions.AsSpan(0, total));
        Tensor tok = _tok.Rows(total), pos = _pos.Rows(total);
        _backend.EmbeddingForward(tok, ids, _model.TokenEmbedding.Table.Value);
        _backend.EmbeddingForward(pos, positions, _model.PositionEmbedding.Table.Value);
        _backend.Add(_x.Rows(total), tok, pos);
    }

    private static int AdapterKey(in DecodeRow row) => row.Adapter?.Id ?? -1;

    /// <summary>x ← block l (x), as <see cref="TransformerBlock.Forward"/> computes it, with the cache for attention.</summary>
    private void Block(int l, ReadOnlySpan<DecodeRow> rows, int total)
    {
        var block = _model.Stack.Blocks[l];
        Tensor x = _x.Rows(total), ln = _ln.Rows(total), residual = _residual.Rows(total);
        _backend.LayerNormForward(ln, _mean.Rows(total), _rstd.Rows(total), x, block.Ln1.Weight.Value, block.Ln1.Bias.Value, block.Ln1.Epsilon);
        Linear(4 * l, _qkv, _ln, total);
        int decoding = 0;
        for (int k = 0; k < rows.Length; k++)
        {
            var row = rows[_order[k]];
            WriteCache(l, row, _tokenStart[k]);
            if (row.Count > 1)
            {
                AttendPrefill(l, row, _tokenStart[k]);
                continue;
            }
            _decodeSorted[decoding] = k;
            _decodeRows[decoding++] = new DecodeAttentionRow((long)_tokenStart[k] * 3 * _c, (long)_tokenStart[k] * _c,
                CacheBase(l, 0, row.Slot), CacheBase(l, 1, row.Slot), row.Start + 1);
        }
        // The decode rows' attention as one fused call where the backend has one, else a GEMM pair per row.
        if (decoding > 0 && !_backend.TryDecodeAttention(_y.Block, _qkv.Block, _cache, _c, _decodeRows.AsSpan(0, decoding), _nh, _hs, _scoreScale))
            for (int d = 0; d < decoding; d++) AttendDecode(l, rows[_order[_decodeSorted[d]]], _tokenStart[_decodeSorted[d]], _decodeSorted[d]);
        Linear(4 * l + 1, _attn, _y, total);
        _backend.Add(residual, x, _attn.Rows(total));
        _backend.LayerNormForward(ln, _mean.Rows(total), _rstd.Rows(total), residual, block.Ln2.Weight.Value, block.Ln2.Bias.Value, block.Ln2.Epsilon);
        Linear(4 * l + 2, _hidden, _ln, total);
        _backend.GeluForward(_activated.Rows(total), _hidden.Rows(total));
        Linear(4 * l + 3, _mlp, _activated, total);
        _backend.Add(x, residual, _mlp.Rows(total));
    }

    /// <summary>output = input · Wᵀ (the packed snapshot) + the rows' adapter deltas + b, as <see cref="Linear.Forward"/> orders it.</summary>
    private void Linear(int index, RowBuffer output, RowBuffer input, int total)
    {
        var linear = Layout.Linears[index];
        int inWidth = linear.InFeatures, outWidth = linear.OutFeatures;
        _backend.GemmPacked(total, 1f, input.Block, 0, inWidth, _weights[index], 0f, output.Block, 0, outWidth);
        _lora.AddDeltas(index, output.Block, outWidth, input.Block, inWidth);
        if (linear.Bias is not null)
        {
            var rows = output.Rows(total);
            _backend.AddBias(rows, rows, linear.Bias.Value);
        }
    }

    /// <summary>Element offset of position 0 of slot <paramref name="slot"/>'s keys (part 0) or values (part 1) in layer l's cache.</summary>
    private long CacheBase(int l, int part, int slot) => ((long)(2 * l + part) * Slots + slot) * _tmax * _c;

    /// <summary>A row's keys and values (from its qkv rows) into its cache slot at positions [Start, Start + Count).</summary>
    private void WriteCache(int l, in DecodeRow row, int tokenRow)
    {
        int c = _c;
        _backend.CopyRows(_cache, CacheBase(l, 0, row.Slot) + (long)row.Start * c, c, _qkv.Block, (long)tokenRow * 3 * c + c, 3 * c, row.Count, c);
        _backend.CopyRows(_cache, CacheBase(l, 1, row.Slot) + (long)row.Start * c, c, _qkv.Block, (long)tokenRow * 3 * c + 2 * c, 3 * c, row.Count, c);
    }

    /// <summary>
    /// A multi-token row's attention in layer l, per head: att [n, len] = causal softmax(q kᵀ/√HS) over the
    /// len = Start + n cached positions, and y [n, HS] = att v. Prefill rows, attended one after another, share the
    /// scores region that follows the decode rows' (and a view per shape, built at its first use).
    /// </summary>
    private void AttendPrefill(int l, in DecodeRow row, int tokenRow)
    {
        int n = row.Count, len = row.Start + n, c = _c, hs = _hs;
        long kBase = CacheBase(l, 0, row.Slot), vBase = CacheBase(l, 1, row.Slot), region = (long)Slots * _nh * _tmax;
        _backend.GemmStridedBatched(ScoresProblem(n, len, tokenRow, kBase, region), hs, hs, (long)n * len, _nh);
        var att = PrefillScores(n, len);
        _backend.SoftmaxForward(att, att, causal: true);
        // The heads of a multi-token row interleave in y's rows, which a strided batch cannot express: one GEMM per head.
        var values = ValuesProblem(n, len, tokenRow, vBase, region);
        for (int h = 0; h < _nh; h++)
        {
            var head = values;
            head.OffsetA = region + (long)h * n * len;
            head.OffsetB = vBase + (long)h * hs;
            head.OffsetC = (long)tokenRow * c + (long)h * hs;
            _backend.Gemm(head);
        }
    }

    /// <summary>
    /// A decode row's attention composed of GEMMs (for a backend without a fused <see cref="Backend.TryDecodeAttention"/>):
    /// the scores of every head as one strided batch in the row's own region, the softmax, and the values as another.
    /// </summary>
    private void AttendDecode(int l, in DecodeRow row, int tokenRow, int sorted)
    {
        int len = row.Start + 1, hs = _hs;
        long region = (long)sorted * _nh * _tmax;
        _backend.GemmStridedBatched(ScoresProblem(1, len, tokenRow, CacheBase(l, 0, row.Slot), region), hs, hs, len, _nh);
        var att = _decodeScores[sorted * _tmax + len - 1];
        _backend.SoftmaxForward(att, att, causal: true);
        _backend.GemmStridedBatched(ValuesProblem(1, len, tokenRow, CacheBase(l, 1, row.Slot), region), len, hs, hs, _nh);
    }

    /// <summary>Head 0 of scores [n, len] = (q/√HS)·kᵀ for a row's n queries against its len cached keys.</summary>
    private GemmProblem ScoresProblem(int n, int len, int tokenRow, long kBase, long region) => new()
    {
        TransA = LoraRuntime.Transpose.No, TransB = LoraRuntime.Transpose.Yes, M = n, N = len, K = _hs, Alpha = _scoreScale, Beta = 0f,
        A = _qkv.Block, OffsetA = (long)tokenRow * 3 * _c, Lda = 3 * _c,
        B = _cache, OffsetB = kBase, Ldb = _c,
        C = _scores, OffsetC = region, Ldc = len,
    };

    /// <summary>Head 0 of y [n, HS] = att [n, len]·v for a row's n queries.</summary>
    private GemmProblem ValuesProblem(int n, int len, int tokenRow, long vBase, long region) => new()
    {
        TransA = LoraRuntime.Transpose.No, TransB = LoraRuntime.Transpose.No, M = n, N = _hs, K = len, Alpha = 1f, Beta = 0f,
        A = _scores, OffsetA = region, Lda = len,
        B = _cache, OffsetB = vBase, Ldb = _c,
        C = _y.Block, OffsetC = (long)tokenRow * _c, Ldc = _c,
    };

    /// <summary>
    /// The view [NH, n, len] of the prefill region, kept once built: a steady prefill shape allocates nothing. The views
    /// are few (a view per prompt-chunk shape); past <see cref="MaxPrefillViews"/> the set starts afresh.
    /// </summary>
    private Tensor PrefillScores(int n, int len)
    {
        long key = (long)n * (_tmax + 1) + len;
        if (_prefillScores.TryGetValue(key, out var view)) return view;
        if (_prefillScores.Count >= MaxPrefillViews) _prefillScores.Clear();
        view = _scores.View((long)Slots * _nh * _tmax, new Shape(_nh, n, len));
        _prefillScores.Add(key, view);
        return view;
    }

    private const int MaxPrefillViews = 4096;

    /// <summary>logits[i] = ln_f(x at row i's last token) · wteᵀ, in the caller's row order.</summary>
    private void Head(ReadOnlySpan<DecodeRow> rows, Span<float> logits)
    {
        int m = rows.Length, c = _c;
        for (int k = 0; k < m; k++)
        {
            int i = _order[k];
            _backend.CopyRows(_last.Block, (long)i * c, c, _x.Block, (long)(_tokenStart[k] + rows[i].Count - 1) * c, c, 1, c);
        }
        var norm = _model.FinalNorm;
        _backend.LayerNormForward(_lastLn.Rows(m), _lastMean.Rows(m), _lastRstd.Rows(m), _last.Rows(m), norm.Weight.Value, norm.Bias.Value, norm.Epsilon);
        _backend.GemmPacked(m, 1f, _lastLn.Block, 0, c, _head, 0f, _logits.Block, 0, _v);
        _backend.Download(_logits.Rows(m), logits[..(m * _v)]);
    }
}

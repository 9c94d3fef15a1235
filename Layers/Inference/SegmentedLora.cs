using LoraRuntime.Layers.Serving;

namespace LoraRuntime.Layers.Inference;

/// <summary>
/// The adapters' deltas of one serving step, PEFT's y += s·(x Aᵀ) Bᵀ for every row with its own adapter: the step's
/// rows are grouped by adapter and scale multiplier (contiguous row ranges), and each projection's shrink (h = x Aᵀ) and expand (y += h·(sB)ᵀ)
/// run as segmented GEMMs, one grouped call per stage with one problem per (group, module), instead of a pass per
/// adapter. The bank stores Aᵀ [in, R] and (sB)ᵀ [R, out], so both stages are NN GEMMs. Output slices of one projection (q, k, v of the fused QKV) interleave in memory, so each expands in its own
/// grouped call. A module is found by the projection it adapts (<see cref="ServedAdapter.ModulesFor"/>). h takes
/// [modules per projection, maxTokens, maxRank] of scratch. Allocation-free once built.
/// </summary>
internal sealed class SegmentedLora : IDisposable
{
    private readonly Backend _backend;
    private readonly int _maxTokens, _maxRank, _maxModules;
    private readonly Tensor _h; // [modules, maxTokens, maxRank]
    private readonly GemmProblem[] _shrink, _expand;
    private readonly ServedAdapter?[] _groupAdapter;
    private readonly int[] _groupStart, _groupCount;
    private readonly float[] _groupScale;
    private int _groups;

    /// <summary>
    /// Scratch for steps of up to <paramref name="maxTokens"/> rows in <paramref name="maxGroups"/> groups, adapters of
    /// rank ≤ <paramref name="maxRank"/>, and up to <paramref name="maxModules"/> modules on one projection (q, k, v).
    /// </summary>
    public SegmentedLora(Backend backend, int maxTokens, int maxRank, int maxGroups, int maxModules)
    {
        _backend = backend;
        _maxTokens = maxTokens;
        _maxRank = maxRank;
        _maxModules = maxModules;
        _h = backend.Zeros(DType.F32, new Shape(maxModules, maxTokens, maxRank));
        _shrink = new GemmProblem[maxGroups * maxModules];
        _expand = new GemmProblem[maxGroups];
        _groupAdapter = new ServedAdapter?[maxGroups];
        _groupStart = new int[maxGroups];
        _groupCount = new int[maxGroups];
        _groupScale = new float[maxGroups];
    }

    /// <summary>Forgets the groups of the last step.</summary>
    public void Clear() => _groups = 0;

    /// <summary>
    /// Adds rows [start, start + count) run with <paramref name="adapter"/> at <paramref name="scale"/> times its loaded
    /// scale; consecutive rows of one adapter and scale merge into one group. Scale 0 rows run the base: no group.
    /// </summary>
    public void Add(ServedAdapter? adapter, float scale, int start, int count)
    {
        if (adapter is null || scale == 0) return;
        if (_groups > 0 && _groupAdapter[_groups - 1] == adapter && _groupScale[_groups - 1] == scale
            && _groupStart[_groups - 1] + _groupCount[_groups - 1] == start)
        {
            _groupCount[_groups - 1] += count;
            return;
        }
        _groupAdapter[_groups] = adapter;
        _groupScale[_groups] = scale;
        _groupStart[_groups] = start;
        _groupCount[_groups] = count;
        _groups++;
    }

    /// <summary>
    /// output [N, outWidth] += each group's deltas for <paramref name="linear"/> from input [N, inWidth] (both addressed
    /// from element 0 of their tensors).
    /// </summary>
    public void AddDeltas(Linear linear, Tensor output, int outWidth, Tensor input, int inWidth)
    {
        if (_groups == 0) return;
        int problems = 0;
        for (int g = 0; g < _groups; g++)
        {
            var modules = _groupAdapter[g]!.ModulesFor(linear);
            for (int kind = 0; kind < modules.Length; kind++)
            {
                ref readonly var m = ref modules[kind];
                // h [count, R] = x [count, in] · Aᵀ [in, R].
                _shrink[problems++] = new GemmProblem
                {
                    TransA = Transpose.No, TransB = Transpose.No, M = _groupCount[g], N = m.Rank, K = inWidth, Alpha = 1f, Beta = 0f,
                    A = input, OffsetA = (long)_groupStart[g] * inWidth, Lda = inWidth,
                    B = _groupAdapter[g]!.Device!, OffsetB = m.OffsetA, Ldb = m.Rank,
                    C = _h, OffsetC = HOffset(kind, _groupStart[g]), Ldc = _maxRank,
                };
            }
        }
        if (problems == 0) return;
        _backend.GemmGrouped(_shrink.AsSpan(0, problems));
        for (int kind = 0; kind < _maxModules; kind++)
        {
            int count = 0;
            for (int g = 0; g < _groups; g++)
            {
                var adapter = _groupAdapter[g]!;
                var modules = adapter.ModulesFor(linear);
                if (kind >= modules.Length) continue;
                ref readonly var m = ref modules[kind];
                // output[rows, slice] += scale · h [count, R] · (s·B)ᵀ [R, out].
                _expand[count++] = new GemmProblem
                {
                    TransA = Transpose.No, TransB = Transpose.No, M = _groupCount[g], N = m.OutFeatures, K = m.Rank, Alpha = _groupScale[g], Beta = 1f,
                    A = _h, OffsetA = HOffset(kind, _groupStart[g]), Lda = _maxRank,
                    B = adapter.Device!, OffsetB = m.OffsetB, Ldb = m.OutFeatures,
                    C = output, OffsetC = (long)_groupStart[g] * outWidth + m.OutOffset, Ldc = outWidth,
                };
            }
            if (count > 0) _backend.GemmGrouped(_expand.AsSpan(0, count));
        }
    }

    private long HOffset(int kind, int row) => ((long)kind * _maxTokens + row) * _maxRank;

    public void Dispose() => _h.Dispose();
}

using BenchmarkDotNet.Attributes;
using LoraRuntime.Cpu;

namespace LoraRuntime.Benchmarks;

/// <summary>
/// The fused primitives of a training step at the small Shakespeare recipe's shapes (B·T = 768 rows, C = 128,
/// the MLP's 4C = 512, B·NH = 48 causal 64×64 attention matrices), each beside <see cref="Add"/>, the memory-bound
/// floor of an element-wise pass over the same [768, 512]. A fused operator far above that floor is a regression
/// (as GELU's backward was, at 25× its forward, before its operator was compiled as its own root).
/// </summary>
[MemoryDiagnoser]
public class PrimitiveBenchmarks
{
    private const int Rows = 768, Channels = 128, Hidden = 512, Matrices = 48, Time = 64;
    private CpuBackend _backend = null!;
    private Tensor _x = null!, _dy = null!, _dx = null!, _y = null!;
    private Tensor _lnIn = null!, _lnOut = null!, _lnDIn = null!, _lnDOut = null!, _mean = null!, _rstd = null!;
    private Tensor _weight = null!, _bias = null!, _dWeight = null!, _dBias = null!;
    private Tensor _scores = null!, _probs = null!, _dProbs = null!, _dScores = null!;

    /// <summary>Allocates the operands from the backend's pool and fills them from a seeded generator.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _backend = new CpuBackend();
        var random = new Random(1234);
        Tensor Random(params int[] dims)
        {
            long n = 1;
            foreach (int d in dims) n *= d;
            var values = new float[n];
            for (long i = 0; i < n; i++) values[i] = (float)(random.NextDouble() * 6 - 3);
            return _backend.FromArray(values, dims);
        }
        _x = Random(Rows, Hidden); _dy = Random(Rows, Hidden); _dx = Random(Rows, Hidden); _y = Random(Rows, Hidden);
        _lnIn = Random(Rows, Channels); _lnOut = Random(Rows, Channels); _lnDIn = Random(Rows, Channels); _lnDOut = Random(Rows, Channels);
        _mean = Random(Rows); _rstd = Random(Rows);
        _weight = Random(Channels); _bias = Random(Channels); _dWeight = Random(Channels); _dBias = Random(Channels);
        _scores = Random(Matrices, Time, Time); _probs = Random(Matrices, Time, Time);
        _dProbs = Random(Matrices, Time, Time); _dScores = Random(Matrices, Time, Time);
        _backend.LayerNormForward(_lnOut, _mean, _rstd, _lnIn, _weight, _bias, 1e-5f);
        _backend.SoftmaxForward(_probs, _scores, causal: true);
    }

    /// <summary>y = x + dy over [768, 512]: the floor.</summary>
    [Benchmark(Baseline = true)]
    public void Add() => _backend.Add(_y, _x, _dy);

    /// <summary>y = GELU(x) over [768, 512].</summary>
    [Benchmark]
    public void GeluForward() => _backend.GeluForward(_y, _x);

    /// <summary>dx += GELU′(x)·dy over [768, 512].</summary>
    [Benchmark]
    public void GeluBackward() => _backend.GeluBackward(_dx, _x, _dy);

    /// <summary>Layer norm of [768, 128].</summary>
    [Benchmark]
    public void LayerNormForward() => _backend.LayerNormForward(_lnOut, _mean, _rstd, _lnIn, _weight, _bias, 1e-5f);

    /// <summary>Its backward, accumulating dInput, dWeight and dBias.</summary>
    [Benchmark]
    public void LayerNormBackward() => _backend.LayerNormBackward(_lnDIn, _dWeight, _dBias, _lnDOut, _lnIn, _weight, _mean, _rstd);

    /// <summary>Causal softmax of 48 matrices of 64×64.</summary>
    [Benchmark]
    public void SoftmaxForward() => _backend.SoftmaxForward(_probs, _scores, causal: true);

    /// <summary>Its backward.</summary>
    [Benchmark]
    public void SoftmaxBackward() => _backend.SoftmaxBackward(_dScores, _probs, _dProbs, causal: true);

    /// <summary>Returns the tensors and the backend's memory.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var t in new[] { _x, _dy, _dx, _y, _lnIn, _lnOut, _lnDIn, _lnDOut, _mean, _rstd, _weight, _bias, _dWeight, _dBias,
                     _scores, _probs, _dProbs, _dScores })
            t.Dispose();
        _backend.Dispose();
    }
}

using System.Runtime.CompilerServices;

namespace LoraRuntime.Cpu.Linalg;

/// <summary>
/// The O(K²) part of a merge, shared out across the workers: the K roots of the secular equation, Löwner's ẑ, and the
/// K columns of the small singular vector matrices, each independent per index. Merges below
/// <see cref="MinParallelSize"/> run on the calling thread.
/// </summary>
internal sealed unsafe class SecularRoots : IParallelWork
{
    private const int MinParallelSize = 256;
    private const int IndicesPerTask = 32;
    private readonly LinalgThreads _workers;
    private int _phase, _k, _rowsU, _rowsV;
    private double* _d, _z, _tau, _zHat, _scratch, _u, _v;
    private int* _origin, _live;

    public SecularRoots(LinalgThreads workers) => _workers = workers;

    /// <summary>
    /// Solves for the K roots (τ and origin per root; <paramref name="scratch"/> holds K doubles per worker), then ẑ.
    /// </summary>
    public void Solve(int k, double* d, double* z, double* tau, int* origin, double* zHat, double* scratch)
    {
        _k = k; _d = d; _z = z; _tau = tau; _origin = origin; _zHat = zHat; _scratch = scratch;
        RunPhase(0);
        RunPhase(1);
    }

    /// <summary>
    /// Column q &lt; K of U (rows ldu, entries at rows live[p]) and V: v_p ∝ ẑ_p/(d_p² − σ_q²), u_0 ∝ −1,
    /// u_p ∝ d_p·ẑ_p/(d_p² − σ_q²), each normalised; the differences d_p − σ_q come from the origins, exactly.
    /// </summary>
    public void Vectors(int* live, double* u, int ldu, double* v, int ldv)
    {
        _live = live; _u = u; _rowsU = ldu; _v = v; _rowsV = ldv;
        RunPhase(2);
    }

    private void RunPhase(int phase)
    {
        _phase = phase;
        int tasks = (_k + IndicesPerTask - 1) / IndicesPerTask;
        if (_k < MinParallelSize)
            for (int t = 0; t < tasks; t++) Execute(t, 0);
        else _workers.Run(this, tasks);
    }

    public void Execute(int task, int worker)
    {
        int start = task * IndicesPerTask, end = Math.Min(_k, start + IndicesPerTask);
        for (int q = start; q < end; q++)
        {
            if (_phase == 0) _tau[q] = SecularEquation.Solve(_k, _d, _z, q, _scratch + (nint)worker * _k, out _origin[q]);
            else if (_phase == 1) _zHat[q] = SecularEquation.RecomputeZ(_k, _d, _z, _origin, _tau, q);
            else Column(q);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Column(int q)
    {
        double sigma = _d[_origin[q]] + _tau[q];
        double* cu = _u + (nint)q * _rowsU, cv = _v + (nint)q * _rowsV;
        double nu = 0, nv = 0;
        for (int p = 0; p < _k; p++)
        {
            double denominator = -SecularEquation.SigmaMinus(q, _d[p], _d, _origin, _tau) * (_d[p] + sigma);
            double vp = _zHat[p] / denominator, up = p == 0 ? -1 : _d[p] * vp;
            cv[_live[p]] = vp;
            cu[_live[p]] = up;
            nv += vp * vp;
            nu += up * up;
        }
        double iu = 1 / Math.Sqrt(nu), iv = 1 / Math.Sqrt(nv);
        for (int p = 0; p < _k; p++)
        {
            cu[_live[p]] *= iu;
            cv[_live[p]] *= iv;
        }
    }
}

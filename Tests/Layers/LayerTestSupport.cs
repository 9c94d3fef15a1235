using LoraRuntime.Cpu;
using LoraRuntime.Layers;

namespace LoraRuntime.Tests.Layers;

/// <summary>A CPU backend over a shared 3-thread pool (work splits unevenly), and the sets a layer test builds on it.</summary>
internal sealed class LayerFixture : IDisposable
{
    private static readonly CpuWorkerPool s_workers = new(3);
    private readonly List<IDisposable> _owned = [];

    public LayerFixture(int maxBatch = 2, int maxTime = 5, bool training = true)
    {
        Backend = new CpuBackend(s_workers);
        Parameters = Own(new ParameterSet(Backend));
        Activations = Own(new Activations(Backend, maxBatch, maxTime, training));
    }

    public CpuBackend Backend { get; }
    public ParameterSet Parameters { get; }
    public Activations Activations { get; }

    /// <summary>Reserves the parameters (trained or frozen) and the activations, then randomises the parameters.</summary>
    public void Reserve(bool trained, int seed = 1, float scale = 0.5f)
    {
        Parameters.Reserve(withGradients: trained);
        Activations.Reserve();
        GradientCheck.Randomize(Parameters, seed, scale);
    }

    public T Own<T>(T disposable) where T : IDisposable
    {
        _owned.Add(disposable);
        return disposable;
    }

    public void Dispose()
    {
        for (int i = _owned.Count - 1; i >= 0; i--) _owned[i].Dispose();
        Backend.Dispose();
    }
}

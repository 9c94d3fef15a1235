namespace LoraRuntime.Layers;

/// <summary>
/// The position of every token of a training batch: [B, T] int32 holding 0..T−1 in each row, for the learned position
/// embedding and the rotary tables. Taken once for the model's maximum (B, T); refilled only when (B, T) change.
/// </summary>
internal sealed class TrainingPositions : IDisposable
{
    private readonly Backend _backend;
    private readonly Tensor _ids; // [maxB·T]
    private readonly int[] _host;
    private Tensor? _view;
    private int _batch, _time;

    public TrainingPositions(Backend backend, int maxBatch, int maxTime)
    {
        _backend = backend;
        _ids = backend.Allocate(DType.I32, new Shape(maxBatch * maxTime));
        _host = new int[maxBatch * maxTime];
    }

    /// <summary>The [B, T] ids, rebuilt only when (B, T) change.</summary>
    public Tensor For(int batch, int time)
    {
        if (_view is not null && batch == _batch && time == _time) return _view;
        var host = _host.AsSpan(0, batch * time);
        for (int i = 0; i < host.Length; i++) host[i] = i % time;
        _view = _ids.View(0, new Shape(batch, time));
        _backend.Upload(_view, host);
        (_batch, _time) = (batch, time);
        return _view;
    }

    public void Dispose() => _ids.Dispose();
}

namespace LoraRuntime.Layers.Training;

/// <summary>
/// Clipping by global norm, as torch.nn.utils.clip_grad_norm_: the norm of every gradient of a set taken as one
/// vector, and all gradients scaled by maxNorm / (norm + 1e-6) when it exceeds maxNorm.
/// </summary>
internal sealed class GradientClipping : IDisposable
{
    private readonly ParameterSet _parameters;
    private readonly Tensor _flat, _norm;
    private readonly float[] _host = new float[1];

    /// <summary>A clipper for the gradients of <paramref name="parameters"/>.</summary>
    public GradientClipping(ParameterSet parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        _parameters = parameters;
        _flat = parameters.Gradients.Reshape(1, checked((int)parameters.Gradients.Length));
        _norm = parameters.Backend.Allocate(1);
    }

    /// <summary>The global norm before clipping; scales the gradients down when it is above <paramref name="maxNorm"/>.</summary>
    public float Clip(float maxNorm)
    {
        var backend = _parameters.Backend;
        backend.RowNorms(_norm, _flat);
        backend.Download(_norm, _host);
        float norm = _host[0];
        if (float.IsFinite(norm) && maxNorm > 0 && norm > maxNorm)
            backend.Scale(_parameters.Gradients, _parameters.Gradients, maxNorm / (norm + 1e-6f));
        return norm;
    }

    /// <summary>Returns the scratch to the pool.</summary>
    public void Dispose() => _norm.Dispose();
}

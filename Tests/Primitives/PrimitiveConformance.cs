using Xunit;

namespace LoraRuntime.Tests.Primitives;

/// <summary>
/// The conformance suite of the fused primitives, written once against <see cref="Backend"/>: every backend gets a
/// sealed subclass. Results are compared with the float64 references of <see cref="Reference"/>, whose gradients
/// are themselves checked against central finite differences.
/// </summary>
public abstract partial class PrimitiveConformance : IDisposable
{
    private readonly List<Tensor> _tensors = [];
    private Backend? _backend, _other;

    /// <summary>A fresh backend of the kind under test.</summary>
    protected abstract Backend CreateBackend();

    /// <summary>The backend under test (created on first use, disposed with the test).</summary>
    protected Backend Backend => _backend ??= CreateBackend();

    /// <summary>A tensor holding <paramref name="values"/>, disposed with the test.</summary>
    protected Tensor Upload(float[] values, params int[] dims) => Track(Backend.FromArray(values, dims));

    /// <summary>An <see cref="DType.I32"/> tensor holding <paramref name="ids"/>, disposed with the test.</summary>
    protected Tensor UploadIds(int[] ids, params int[] dims)
    {
        var t = Track(Backend.Allocate(DType.I32, new Shape(dims)));
        Backend.Upload(t, ids);
        return t;
    }

    /// <summary>Disposes <paramref name="tensor"/> with the test.</summary>
    protected Tensor Track(Tensor tensor)
    {
        _tensors.Add(tensor);
        return tensor;
    }

    /// <summary>A zero-filled tensor of another backend of the same kind.</summary>
    protected Tensor Foreign(params int[] dims) => Track((_other ??= CreateBackend()).Zeros(DType.F32, new Shape(dims)));

    /// <summary>A tensor that has been disposed.</summary>
    protected Tensor Disposed(params int[] dims)
    {
        var t = Backend.Zeros(DType.F32, new Shape(dims));
        t.Dispose();
        return t;
    }

    /// <summary>Uniform values in [lo, hi).</summary>
    protected static float[] Uniform(Random rng, long count, float lo = -1, float hi = 1)
    {
        var values = new float[count];
        for (int i = 0; i < values.Length; i++) values[i] = lo + (hi - lo) * rng.NextSingle();
        return values;
    }

    /// <summary>
    /// Asserts that <paramref name="call"/> throws an <see cref="ArgumentException"/> for <paramref name="parameter"/>
    /// whose message names it, and that none of <paramref name="outputs"/> changed.
    /// </summary>
    protected static void Rejects(string parameter, Action call, params Tensor[] outputs) =>
        AssertRejected<ArgumentException>(parameter, call, outputs, e => e.ParamName);

    /// <summary>As <see cref="Rejects"/>, for a disposed argument: an <see cref="ObjectDisposedException"/> naming it.</summary>
    protected static void RejectsDisposed(string parameter, Action call, params Tensor[] outputs) =>
        AssertRejected<ObjectDisposedException>(parameter, call, outputs, e => e.ObjectName);

    private static void AssertRejected<TException>(string parameter, Action call, Tensor[] outputs, Func<TException, string?> named)
        where TException : Exception
    {
        var before = outputs.Select(t => t.ToArray()).ToArray();
        var error = Assert.ThrowsAny<TException>(call);
        Assert.Equal(parameter, named(error));
        Assert.Contains(parameter, error.Message);
        for (int i = 0; i < outputs.Length; i++)
            Assert.Equal(before[i], outputs[i].ToArray());
    }

    public void Dispose()
    {
        foreach (var t in _tensors) t.Dispose();
        _backend?.Dispose();
        _other?.Dispose();
        GC.SuppressFinalize(this);
    }
}

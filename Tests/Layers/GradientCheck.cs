using LoraRuntime.Layers;
using LoraRuntime.Tests.Primitives;
using Reference = LoraRuntime.Tests.Support.Reference;
using Xunit;

namespace LoraRuntime.Tests.Layers;

/// <summary>
/// Checks a layer against the float64 reference: its forward output, then every trained parameter's gradient and
/// the input gradient against central finite differences of the reference (which therefore need no backward of
/// their own). Parameters are compared as whole tensors by relative L2 error.
/// </summary>
internal static class GradientCheck
{
    /// <summary>‖Δ‖/‖ref‖ allowed for float32 forward results.</summary>
    public const double ForwardTolerance = 2e-5;

    /// <summary>‖Δ‖/‖ref‖ allowed for float32 gradients against float64 finite differences.</summary>
    public const double GradientTolerance = 1e-4;

    /// <summary>The values of every parameter of <paramref name="sets"/>, widened, by name.</summary>
    public static Dictionary<string, double[]> Download(params ParameterSet[] sets) =>
        sets.SelectMany(s => s.Parameters).ToDictionary(p => p.Name, p => Reference.ToDouble(p.Value.ToArray()));

    /// <summary>Fills every parameter with uniform values in ±<paramref name="scale"/> (layer-norm weights around 1).</summary>
    public static void Randomize(ParameterSet set, int seed, float scale = 0.5f)
    {
        var rng = new Random(seed);
        foreach (var p in set.Parameters)
        {
            bool normWeight = p.Name.Contains(".ln") && p.Name.EndsWith(".weight", StringComparison.Ordinal);
            var values = Enumerable.Range(0, (int)p.Shape.Length)
                .Select(_ => (normWeight ? 1 : 0) + scale * (2 * rng.NextSingle() - 1)).ToArray();
            p.Value.CopyFrom(values);
        }
    }

    /// <summary>
    /// Runs <paramref name="forward"/> and <paramref name="backward"/> (after zeroing the trained sets' gradients) on a
    /// random input of <paramref name="inputDims"/> and compares with <paramref name="reference"/>, whose parameter
    /// dictionary holds every set's values. Returns the float32 output.
    /// </summary>
    public static float[] Run(Backend backend, ParameterSet[] sets, Func<ReferenceModel, double[], double[]> reference,
        Func<Dictionary<string, double[]>, ReferenceModel> model, Action<Tensor, Tensor> forward, Action<Tensor, Tensor, Tensor> backward,
        int[] inputDims, int[] outputDims, int seed, string what, bool checkInput = true)
    {
        var rng = new Random(seed);
        var x = Enumerable.Range(0, (int)new Shape(inputDims).Length).Select(_ => 2 * rng.NextSingle() - 1).ToArray();
        var w = Enumerable.Range(0, (int)new Shape(outputDims).Length).Select(_ => 2 * rng.NextSingle() - 1).ToArray();
        using var input = backend.FromArray(x, inputDims);
        using var output = backend.Zeros(outputDims);
        using var dOutput = backend.FromArray(w, outputDims);
        using var dInput = backend.Zeros(inputDims);
        var parameters = Download(sets);
        double[] xd = Reference.ToDouble(x), wd = Reference.ToDouble(w);

        forward(output, input);
        var y = output.ToArray();
        Assert.True(Reference.RelativeError(y, reference(model(parameters), xd)) <= ForwardTolerance,
            $"{what}: forward error {Reference.RelativeError(y, reference(model(parameters), xd)):E2}");

        foreach (var set in sets.Where(s => s.HasGradients)) set.ZeroGradients();
        backward(dInput, dOutput, input);

        double Loss(Dictionary<string, double[]> p, double[] xs) => Expect.Dot(wd, reference(model(p), xs));
        foreach (var p in sets.Where(s => s.HasGradients).SelectMany(s => s.Parameters))
        {
            var fd = Expect.FiniteDifferences(v => Loss(new Dictionary<string, double[]>(parameters) { [p.Name] = v }, xd), parameters[p.Name]);
            AssertClose(p.Gradient.ToArray(), fd, $"{what}: gradient of {p.Name}");
        }
        if (checkInput) AssertClose(dInput.ToArray(), Expect.FiniteDifferences(v => Loss(parameters, v), xd), $"{what}: input gradient");
        return y;
    }

    public static void AssertClose(float[] actual, double[] expected, string what)
    {
        double error = Reference.RelativeError(actual, expected);
        Assert.True(error <= GradientTolerance, $"{what}: relative error {error:E2} (‖expected‖ = {Math.Sqrt(expected.Sum(v => v * v)):E2})");
    }
}

namespace LoraRuntime.Layers;

/// <summary>
/// The cos and sin tables of rotary position embeddings, [T, H] for positions 0..T−1 and the H = d/2 frequencies of
/// the d = ⌊HS·partial⌋ rotated dimensions, computed once in float64 from <see cref="RotaryOptions"/> (Hugging Face's
/// <c>rope_type</c> default, linear, dynamic, llama3 and yarn) and kept on the backend as float32, the attention factor
/// (YaRN's) folded in. Every attention layer of a model shares them.
/// </summary>
internal sealed class RotaryTables : IDisposable
{
    private readonly TrainingPositions _training;

    /// <summary>Tables for <paramref name="positions"/> positions; <paramref name="training"/> gives a training batch's positions.</summary>
    public RotaryTables(Backend backend, RotaryOptions options, int headSize, int positions, TrainingPositions training)
    {
        Validate(options, headSize, positions);
        Options = options;
        _training = training;
        var inverse = InverseFrequencies(options, headSize, positions);
        Half = inverse.Length;
        double factor = AttentionFactor(options);
        var cos = new float[(long)positions * Half];
        var sin = new float[cos.Length];
        for (int p = 0; p < positions; p++)
            for (int i = 0; i < Half; i++)
            {
                double angle = p * inverse[i];
                cos[(long)p * Half + i] = (float)(Math.Cos(angle) * factor);
                sin[(long)p * Half + i] = (float)(Math.Sin(angle) * factor);
            }
        Cos = backend.Allocate(DType.F32, new Shape(positions, Half));
        Sin = backend.Allocate(DType.F32, new Shape(positions, Half));
        Cos.CopyFrom(cos);
        Sin.CopyFrom(sin);
    }

    /// <summary>The options the tables were computed from.</summary>
    public RotaryOptions Options { get; }

    /// <summary>H, the rotated frequencies (half the rotated dimensions of a head).</summary>
    public int Half { get; }

    /// <summary>cos [T, H] and sin [T, H], times the attention factor.</summary>
    public Tensor Cos { get; }

    /// <inheritdoc cref="Cos"/>
    public Tensor Sin { get; }

    /// <summary>The positions [B, T] of a training batch's tokens.</summary>
    public Tensor Positions(int batch, int time) => _training.For(batch, time);

    /// <summary>Rotates the first <paramref name="heads"/> heads of each row at its position (or back, with <paramref name="inverse"/>).</summary>
    public void Apply(Tensor rows, Tensor positions, int heads, int headSize, bool inverse = false) =>
        Cos.Backend.Rotary(rows, positions, heads, headSize, Cos, Sin, inverse);

    public void Dispose()
    {
        Cos.Dispose();
        Sin.Dispose();
    }

    /// <summary>
    /// Throws an <see cref="ArgumentException"/> naming the first option this runtime cannot compute as Hugging Face does
    /// for contexts of up to <paramref name="positions"/>.
    /// </summary>
    public static void Validate(RotaryOptions options, int headSize, int positions)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!(options.Theta > 1) || !double.IsFinite(options.Theta))
            throw new ArgumentOutOfRangeException(nameof(options), options.Theta, $"rope_theta: expected a finite base > 1; got {options.Theta}");
        if (!(options.PartialFactor > 0 && options.PartialFactor <= 1))
            throw new ArgumentOutOfRangeException(nameof(options), options.PartialFactor, $"partial_rotary_factor: expected a fraction in (0, 1]; got {options.PartialFactor}");
        int dimensions = (int)(headSize * options.PartialFactor);
        if (dimensions < 2 || dimensions % 2 != 0)
            throw new ArgumentException($"partial_rotary_factor: ⌊head_dim {headSize} × {options.PartialFactor}⌋ = {dimensions} rotated dimensions; expected an even number ≥ 2", nameof(options));
        if (!Enum.IsDefined(options.Scaling))
            throw new ArgumentOutOfRangeException(nameof(options), options.Scaling, $"rope_scaling: unknown type {options.Scaling}");
        if (options.Scaling != RopeScaling.None && !(options.Factor >= 1 && double.IsFinite(options.Factor)))
            throw new ArgumentOutOfRangeException(nameof(options), options.Factor, $"rope_scaling.factor: expected a finite factor ≥ 1; got {options.Factor}");
        if (options.Scaling is RopeScaling.Llama3 or RopeScaling.Yarn or RopeScaling.Dynamic && options.OriginalMaxPositions < 1)
            throw new ArgumentOutOfRangeException(nameof(options), options.OriginalMaxPositions, $"original_max_position_embeddings: expected ≥ 1; got {options.OriginalMaxPositions}");
        if (options.Scaling == RopeScaling.Llama3 && !(options.HighFrequencyFactor > options.LowFrequencyFactor && options.LowFrequencyFactor > 0))
            throw new ArgumentException(
                $"rope_scaling: llama3 needs high_freq_factor > low_freq_factor > 0; got {options.HighFrequencyFactor} and {options.LowFrequencyFactor}", nameof(options));
        if (options.FrequencyFactors is { } factors)
        {
            int half = dimensions / 2;
            if (factors.Count != half)
                throw new ArgumentException($"rope_freqs: expected {half} frequency factors (half of {dimensions} rotated dimensions); got {factors.Count}", nameof(options));
            for (int i = 0; i < half; i++)
                if (!(factors[i] > 0) || !double.IsFinite(factors[i]))
                    throw new ArgumentOutOfRangeException(nameof(options), factors[i], $"rope_freqs: factor {i} is {factors[i]}; expected a finite factor > 0");
        }
        // Dynamic NTK scaling changes every frequency with the sequence's length once it passes the trained context, so
        // keys cached at one length would not match queries at another: honoured up to that context, refused past it.
        if (options.Scaling == RopeScaling.Dynamic && positions > options.OriginalMaxPositions)
            throw new ArgumentException(
                $"rope_scaling: dynamic scaling is supported for contexts up to max_position_embeddings = {options.OriginalMaxPositions}; this model reserves {positions} positions (reserve fewer)",
                nameof(options));
    }

    /// <summary>θ_i for i &lt; d/2, in float64, scaled as Hugging Face's rope initialisation functions scale them.</summary>
    public static double[] InverseFrequencies(RotaryOptions options, int headSize, int positions)
    {
        int d = (int)(headSize * options.PartialFactor), half = d / 2;
        var inverse = new double[half];
        for (int i = 0; i < half; i++) inverse[i] = 1 / Math.Pow(options.Theta, 2.0 * i / d);
        switch (options.Scaling)
        {
            case RopeScaling.None:
            case RopeScaling.Dynamic: // within the trained context (the only one accepted) NTK scaling leaves θ alone
                break;
            case RopeScaling.Linear:
                for (int i = 0; i < half; i++) inverse[i] /= options.Factor;
                break;
            case RopeScaling.Llama3:
            {
                double low = options.OriginalMaxPositions / options.LowFrequencyFactor, high = options.OriginalMaxPositions / options.HighFrequencyFactor;
                for (int i = 0; i < half; i++)
                {
                    double wavelength = 2 * Math.PI / inverse[i];
                    if (wavelength > low) inverse[i] /= options.Factor;
                    else if (wavelength >= high)
                    {
                        double smooth = (options.OriginalMaxPositions / wavelength - options.LowFrequencyFactor)
                            / (options.HighFrequencyFactor - options.LowFrequencyFactor);
                        inverse[i] = (1 - smooth) * inverse[i] / options.Factor + smooth * inverse[i];
                    }
                }
                break;
            }
            case RopeScaling.Yarn:
            {
                double Correction(double rotations) =>
                    d * Math.Log(options.OriginalMaxPositions / (rotations * 2 * Math.PI)) / (2 * Math.Log(options.Theta));
                double lowDim = Math.Max(Math.Floor(Correction(options.BetaFast)), 0), highDim = Math.Min(Math.Ceiling(Correction(options.BetaSlow)), d - 1);
                if (lowDim == highDim) highDim += 0.001;
                for (int i = 0; i < half; i++)
                {
                    double ramp = Math.Clamp((i - lowDim) / (highDim - lowDim), 0, 1), extrapolation = 1 - ramp;
                    inverse[i] = inverse[i] / options.Factor * (1 - extrapolation) + inverse[i] * extrapolation;
                }
                break;
            }
        }
        if (options.FrequencyFactors is { } factors)
            for (int i = 0; i < half; i++) inverse[i] /= factors[i];
        return inverse;
    }

    /// <summary>
    /// The factors that turn the unscaled θ_i into <paramref name="options"/>' scaled ones (llama.cpp's rope_freqs: Llama 3
    /// and linear scaling are frequency-wise divisions), with any <see cref="RotaryOptions.FrequencyFactors"/> folded in.
    /// </summary>
    public static double[] FrequencyFactors(RotaryOptions options, int headSize, int positions)
    {
        var plain = InverseFrequencies(new RotaryOptions { Theta = options.Theta, PartialFactor = options.PartialFactor }, headSize, positions);
        var scaled = InverseFrequencies(options, headSize, positions);
        return plain.Select((p, i) => p / scaled[i]).ToArray();
    }

    /// <summary>The factor cos and sin are multiplied by: YaRN's attention factor, else 1.</summary>
    public static double AttentionFactor(RotaryOptions options) =>
        options.Scaling != RopeScaling.Yarn ? 1
        : options.AttentionFactor ?? (options.Factor <= 1 ? 1 : 0.1 * Math.Log(options.Factor) + 1);
}

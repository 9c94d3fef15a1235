namespace LoraRuntime;

/// <summary>What a product with a stored weight (<see cref="Backend.GemmQuantized"/>) does with its float32 operand A.</summary>
public enum ActivationPrecision
{
    /// <summary>A as given: W decoded to float32, float32 products and sums. The training forward pass and every gradient.</summary>
    Float32,

    /// <summary>
    /// For the forward product with a Q8_0 or Q4_0 weight, A rounded per block of 32 to Q8_0 (d = max|x| / 127, an F16
    /// scale: llama.cpp's quantization of activations) and multiplied by W's blocks in integers, exact per block, scaled
    /// and summed in float32: the inference product, what llama.cpp computes. Other formats and the input gradient take
    /// A as given; a backend without integer products (CUDA) takes it as given too.
    /// </summary>
    Q8_0,

    /// <summary>
    /// For the forward product with a BF16 weight, A rounded to bfloat16 (to nearest even) and multiplied by W's
    /// bfloat16 values, products and sums in float32: the inference product over a BF16 base, llama.cpp's arithmetic
    /// (AVX-512 BF16's dot products where the CPU has them). Other formats and the input gradient take A as given; so
    /// does a backend without such a product (CUDA, unless its 16-bit tensor-core precision is chosen).
    /// </summary>
    BFloat16,
}

/// <summary>The activation precision of inference products.</summary>
public static class ActivationPrecisions
{
    /// <summary>
    /// What the inference product with a <paramref name="format"/> weight rounds A to, as llama.cpp does: Q8_0 for Q8_0
    /// and Q4_0 weights, bfloat16 for BF16, nothing (float32) for the others.
    /// </summary>
    public static ActivationPrecision ForInference(WeightFormat format) => format switch
    {
        WeightFormat.Q8_0 or WeightFormat.Q4_0 => ActivationPrecision.Q8_0,
        WeightFormat.BF16 => ActivationPrecision.BFloat16,
        _ => ActivationPrecision.Float32,
    };
}

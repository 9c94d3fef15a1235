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
}

using LoraRuntime.Layers;

namespace LoraRuntime.Cli.Training;

/// <summary>
/// The architectures <c>lora train --arch</c> and <c>lora demo --arch</c> build: GPT-2's block, or a Llama-style one
/// (RMSNorm, rotary positions with θ = 10000, the gated SiLU MLP with I ≈ 8C/3 rounded up to a multiple of 8,
/// grouped-query attention with half as many key/value heads, no biases, a tied head), at the same C, L, NH and T.
/// </summary>
internal static class Architectures
{
    /// <summary>The names --arch takes.</summary>
    public const string Names = "gpt or llama";

    /// <summary><paramref name="config"/> (GPT-2-shaped) as the architecture <paramref name="arch"/> names.</summary>
    public static GptConfig Apply(GptConfig config, string arch) => arch switch
    {
        "gpt" => config,
        "llama" => config with
        {
            LayerNormEpsilon = 1e-5f,
            Norm = NormKind.RmsNorm,
            Mlp = MlpKind.GatedSilu,
            IntermediateSize = (8 * config.Channels / 3 + 7) / 8 * 8,
            KeyValueHeads = config.Heads % 2 == 0 ? config.Heads / 2 : config.Heads,
            Rotary = new RotaryOptions { Theta = 10000 },
            QkvBias = false,
            OutputBias = false,
            MlpBias = false,
            TiedHead = true,
        },
        _ => throw new UsageException($"--arch: expected {Names}; got '{arch}'"),
    };
}

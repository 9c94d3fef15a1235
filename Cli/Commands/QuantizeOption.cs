using System.CommandLine;
using LoraRuntime.Layers;

namespace LoraRuntime.Cli.Commands;

/// <summary>The <c>--quantize</c> option: how the frozen base keeps its weights.</summary>
internal static class QuantizeOption
{
    /// <summary>The option (no default: see <see cref="Read"/>).</summary>
    public static Option<string?> Create() => new("--quantize")
    {
        Description = "keep the base's projection and embedding weights as f32, f16, bf16, q8_0, q4_0, nf4 or nf4-dq " +
            "(NF4 with bitsandbytes' double quantization; default: as the checkpoint stores them on the CPU, float32 on CUDA)",
        HelpName = "FORMAT",
    };

    /// <summary>
    /// The storage asked for. Without the option, each weight keeps its file's type on the CPU (a BF16 checkpoint stays
    /// BF16: its float32 values are exact, at half the memory) and is float32 on other backends, whose stored-weight
    /// products are not fused yet.
    /// </summary>
    public static WeightStorage Read(string? text, Backend? backend)
    {
        if (text is null) return backend is null ? WeightStorage.Float32 : WeightStorage.DefaultFor(backend);
        try
        {
            return WeightStorage.Parse(text, "--quantize");
        }
        catch (ArgumentException e)
        {
            throw new UsageException(e.Message);
        }
    }
}

using System.Text.Json.Serialization;

namespace LoraRuntime.Cli.Bench;

/// <summary>
/// One benchmark result, the JSON element every <c>lora bench</c> command writes:
/// <c>{"op", "device", "shape", "trans", "median_ms", "gflops", "reps", "rel_err"}</c>.
/// </summary>
/// <param name="Op">The operation ("sgemm").</param>
/// <param name="Device">The backend's name ("cpu").</param>
/// <param name="Shape">The problem's dimensions ([m, n, k] for a GEMM).</param>
/// <param name="Trans">The operands' transposition ("NN", "NT", "TN", "TT").</param>
/// <param name="MedianMs">Median time per call in milliseconds.</param>
/// <param name="Gflops">Floating-point operations per median call, in 10⁹ per second.</param>
/// <param name="Reps">Timed calls.</param>
/// <param name="RelErr">Error against a float64 reference, relative to the reference's magnitude (NaN when not checked).</param>
/// <param name="Ratio">The median relative to the case it is compared with (a LoRA forward against the base alone); omitted when null.</param>
/// <param name="ReservedBytes">Bytes the case reserved up front (activations); omitted when null.</param>
internal sealed record BenchRecord(
    string Op, string Device, int[] Shape, string Trans, double MedianMs, double Gflops, int Reps, double RelErr,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] double? Ratio = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] long? ReservedBytes = null);

/// <summary>Source-generated JSON for the bench results (no reflection: the CLI is AOT-publishable).</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    WriteIndented = true,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(BenchRecord[]))]
[JsonSerializable(typeof(SvdBenchRecord[]))]
[JsonSerializable(typeof(LatencyRecord[]))]
[JsonSerializable(typeof(HttpBenchRecord[]))]
internal sealed partial class BenchJsonContext : JsonSerializerContext;

using System.Text.Json.Serialization;

namespace LoraRuntime.Cli.Bench;

/// <summary>
/// One <c>lora bench svd</c> result, as JSON: <c>{"op", "device", "shape", "median_ms", "reps", "rel_err", "best_rel_err"?}</c>.
/// </summary>
/// <param name="Op">"svd" (the full thin SVD) or "truncated_svd".</param>
/// <param name="Device">The backend's name ("cpu").</param>
/// <param name="Shape">[m, n] for a full SVD, [m, n, rank] for a truncated one.</param>
/// <param name="MedianMs">Median time per call in milliseconds.</param>
/// <param name="Reps">Timed calls.</param>
/// <param name="RelErr">‖A − U·S·Vᵀ‖_F / ‖A‖_F of the last call, in float64.</param>
/// <param name="BestRelErr">For a truncated SVD, the same error of the best rank-k approximation (from A's known factors).</param>
internal sealed record SvdBenchRecord(string Op, string Device, int[] Shape, double MedianMs, int Reps, double RelErr,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] double? BestRelErr = null);

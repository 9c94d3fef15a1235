namespace LoraRuntime.Layers;

/// <summary>
/// The weight of a factored <see cref="Linear"/>: W [OC, C] ≈ U·V with U [OC, K] and V [K, C], as <c>lora compress</c>
/// writes it (U = U_K·√Σ_K, V = √Σ_K·V_Kᵀ from the truncated SVD of the dense weight). The forward pass is
/// h [B, T, K] = x·Vᵀ, y = h·Uᵀ: K·(C + OC) multiply-adds per row instead of C·OC. The intermediate h lives in the
/// model's activations (and its gradient dh with the training ones), so passes allocate nothing.
/// </summary>
internal sealed class LinearFactors
{
    private readonly ActivationBuffer _h, _dh;

    public LinearFactors(ParameterSet parameters, Activations activations, string name, int inFeatures, int outFeatures, int rank)
    {
        int limit = Math.Min(inFeatures, outFeatures);
        if (rank < 1 || rank > limit)
            throw new ArgumentOutOfRangeException(nameof(rank), rank,
                $"rank: the factored rank K of {name} [{outFeatures}, {inFeatures}] must be in 1..{limit} = min(OC, C); got K = {rank}");
        Rank = rank;
        U = parameters.Add(name + ".weight_u", outFeatures, rank);
        V = parameters.Add(name + ".weight_v", rank, inFeatures);
        _h = activations.Add(name + ".factors.h", (b, t) => new Shape(b, t, rank));
        _dh = activations.AddGradient(name + ".factors.dh", (b, t) => new Shape(b, t, rank));
    }

    /// <summary>K.</summary>
    public int Rank { get; }

    /// <summary>U [OC, K].</summary>
    public Parameter U { get; }

    /// <summary>V [K, C].</summary>
    public Parameter V { get; }

    private Backend Backend => U.Owner.Backend;

    /// <summary>output [B, T, OC] = (input [B, T, C] · Vᵀ) · Uᵀ, overwriting output.</summary>
    public void Forward(Tensor output, Tensor input, int batch, int time)
    {
        Tensor h = _h.For(batch, time);
        Backend.MatMul(h, input, V.Value, transB: Transpose.Yes);
        Backend.MatMul(output, h, U.Value, transB: Transpose.Yes);
    }

    /// <summary>
    /// dh = dOutput · U; dInput = β·dInput + dh · V (when given); unless frozen, dU += dOutputᵀ · h and dV += dhᵀ · input.
    /// Needs the forward pass of this input just before (h is kept from it).
    /// </summary>
    public void Backward(Tensor? dInput, Tensor dOutput, Tensor input, int batch, int time, bool frozen, float beta = 1f)
    {
        Tensor h = _h.For(batch, time), dh = _dh.For(batch, time);
        Backend.MatMul(dh, dOutput, U.Value);
        if (dInput is not null) Backend.MatMul(dInput, dh, V.Value, beta: beta);
        if (frozen) return;
        Backend.MatMul(U.Gradient, dOutput, h, transA: Transpose.Yes, beta: 1f);
        Backend.MatMul(V.Gradient, dh, input, transA: Transpose.Yes, beta: 1f);
    }
}

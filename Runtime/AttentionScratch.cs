namespace LoraRuntime;

/// <summary>
/// What the composed (unfused) causal self-attention keeps per pass: the heads of q, k and v split out of the packed
/// projection and the heads' outputs, each [B, NH, T, HS]. A backend with a fused kernel for the shape reads and
/// writes none of them; the caller reserves them with its activations so that neither path allocates.
/// </summary>
/// <param name="Queries">q heads [B, NH, T, HS].</param>
/// <param name="Keys">k heads [B, NH, T, HS].</param>
/// <param name="Values">v heads [B, NH, T, HS].</param>
/// <param name="Heads">The heads' outputs att·v [B, NH, T, HS] before they are merged into rows.</param>
public readonly record struct AttentionScratch(Tensor Queries, Tensor Keys, Tensor Values, Tensor Heads);

/// <summary>
/// The gradients the composed causal self-attention's backward pass works in: dq, dk, dv and dy split into heads,
/// each [B, NH, T, HS], and the probabilities' gradient dAtt [B, NH, T, T]. A fused kernel uses none of them.
/// </summary>
/// <param name="DQueries">dq heads.</param>
/// <param name="DKeys">dk heads.</param>
/// <param name="DValues">dv heads.</param>
/// <param name="DHeads">dy split into heads.</param>
/// <param name="DAtt">∂L/∂att [B, NH, T, T].</param>
public readonly record struct AttentionGradientScratch(Tensor DQueries, Tensor DKeys, Tensor DValues, Tensor DHeads, Tensor DAtt);

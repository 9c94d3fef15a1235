namespace LoraRuntime.Layers.Adapters;

/// <summary>
/// How an adapter's A [R, in] and B [out, R] start (PEFT's <c>init_lora_weights</c>). Each value names one
/// initialiser in <see cref="LoraWeights"/>; PiSSA and OLoRA, which need the backend's SVD and QR, join as new values.
/// </summary>
internal enum LoraInit
{
    /// <summary>
    /// PEFT's default (<c>True</c>): A from torch's kaiming_uniform_(a = √5), i.e. uniform in ±1/√in; B = 0, so the
    /// adapter starts as the identity.
    /// </summary>
    Default,

    /// <summary>PEFT's "gaussian": A ~ N(0, σ²) with σ = 1/R, as <c>nn.init.normal_(std=1/r)</c>; B = 0.</summary>
    Gaussian,

    /// <summary>
    /// PEFT's <c>False</c>: both A and B keep nn.Linear's default initialisation (uniform in ±1/√in and ±1/√R), so
    /// the adapter is not the identity. For tests and experiments.
    /// </summary>
    Random,

    /// <summary>
    /// PiSSA (PEFT's "pissa"): from the exact SVD W = U S Vᵀ of the adapted weight, A = √(S_R / s)·V_Rᵀ and
    /// B = U_R·√(S_R / s), and the base becomes the residual W − s·B·A, so the model's output is unchanged.
    /// </summary>
    Pissa,

    /// <summary>PiSSA through the randomized truncated SVD (PEFT's "pissa_niter_K", K = <see cref="LoraOptions.PissaIterations"/>).</summary>
    PissaRandomized,

    /// <summary>OLoRA (PEFT's "olora"): from the thin QR W = Q R, A = R[:R] and B = Q[:, :R]; the base becomes W − s·B·A.</summary>
    Olora,
}

/// <summary>
/// The hyperparameters of one adapter on one layer, with PEFT's meaning and defaults:
/// y = x Wᵀ + b + s·(dropout(x) Aᵀ) Bᵀ, s = α/R (α/√R with rsLoRA).
/// </summary>
internal sealed record LoraOptions
{
    /// <summary>R, the rank (PEFT's <c>r</c>, default 8).</summary>
    public int Rank { get; init; } = 8;

    /// <summary>α (PEFT's <c>lora_alpha</c>, default 8).</summary>
    public float Alpha { get; init; } = 8;

    /// <summary>The dropout probability applied to the adapter's input while training (<c>lora_dropout</c>, default 0).</summary>
    public float Dropout { get; init; }

    /// <summary>Rank-stabilised scaling s = α/√R instead of α/R (<c>use_rslora</c>).</summary>
    public bool UseRsLora { get; init; }

    /// <summary>DoRA: a trained magnitude per output row over the direction W + s·BA (<c>use_dora</c>).</summary>
    public bool UseDora { get; init; }

    /// <summary>How A and B start.</summary>
    public LoraInit Init { get; init; } = LoraInit.Default;

    /// <summary>Power iterations of <see cref="LoraInit.PissaRandomized"/> (PEFT's K in pissa_niter_K).</summary>
    public int PissaIterations { get; init; } = 4;

    /// <summary>Seeds the initialisation and the dropout masks (mixed with each module's path).</summary>
    public ulong Seed { get; init; }

    /// <summary>s = α/R, or α/√R with <see cref="UseRsLora"/>.</summary>
    public float Scale => UseRsLora ? Alpha / MathF.Sqrt(Rank) : Alpha / Rank;
}

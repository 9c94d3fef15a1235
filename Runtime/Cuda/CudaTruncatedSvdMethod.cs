namespace LoraRuntime.Cuda;

/// <summary>How <see cref="CudaBackend"/> computes <see cref="Backend.TruncatedSvd"/>.</summary>
public enum CudaTruncatedSvdMethod
{
    /// <summary>
    /// cuSOLVER's randomized SVD (cusolverDnXgesvdr, float64) with the options' oversampling and power iterations; its
    /// random test matrix is cuSOLVER's own, so <see cref="TruncatedSvdOptions.Seed"/> does not change the result.
    /// </summary>
    Cusolver,
    /// <summary>
    /// The CPU path's range finder on this backend's GEMM (float32), QR and SVD (cuSOLVER, float64), with the CPU's
    /// seeded Gaussian test matrix: the seed is honoured and results agree with the CPU's to rounding.
    /// </summary>
    Sketch,
}

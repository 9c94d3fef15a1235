namespace LoraRuntime.Layers.Adapters;

/// <summary>
/// The initialisations that start from the adapted weight itself (PEFT's pissa, pissa_niter_K and olora): A and B
/// span the weight's principal (or QR) directions and the base keeps the residual W − s·B·A, so the adapted model's
/// output is unchanged at step 0. They are the only code besides merging that writes a base weight, and only when
/// asked for by <see cref="LoraOptions.Init"/>.
/// </summary>
internal static class WeightInitialization
{
    /// <summary>Fills A [R, in] and B [out, R] of <paramref name="w"/> from <paramref name="weight"/> [out, in] and replaces it by the residual.</summary>
    public static void Initialize(LoraWeights w, Tensor weight, ulong seed)
    {
        var backend = weight.Backend;
        int outFeatures = weight.Shape[0], inFeatures = weight.Shape[1], rank = w.Rank;
        float scale = w.Scale;
        var a = new float[rank * inFeatures];
        var b = new float[outFeatures * rank];
        if (w.Options.Init == LoraInit.Olora)
        {
            int k = Math.Min(outFeatures, inFeatures);
            using var q = backend.Allocate(outFeatures, k);
            using var r = backend.Allocate(k, inFeatures);
            backend.Qr(q, r, weight);
            var qh = q.ToArray();
            r.View(0, new Shape(rank * inFeatures)).CopyTo(a); // the first R rows of R
            for (int i = 0; i < outFeatures; i++)
                for (int j = 0; j < rank; j++) b[i * rank + j] = qh[i * k + j];
        }
        else
        {
            var (u, s, vt) = TopSingularTriplets(weight, rank, w.Options, seed);
            for (int j = 0; j < rank; j++)
            {
                // PEFT divides S_R by the scale so that s·B·A = U_R S_R V_Rᵀ exactly.
                float root = MathF.Sqrt(s[j] / scale);
                for (int c = 0; c < inFeatures; c++) a[j * inFeatures + c] = root * vt[j * inFeatures + c];
                for (int i = 0; i < outFeatures; i++) b[i * rank + j] = root * u[i * rank + j];
            }
        }
        w.A.Value.CopyFrom(a);
        w.B.Value.CopyFrom(b);
        // W ← W − s·B·A.
        backend.MatMul(weight, w.B.Value, w.A.Value, alpha: -scale, beta: 1f);
    }

    private static (float[] U, float[] S, float[] Vt) TopSingularTriplets(Tensor weight, int rank, LoraOptions options, ulong seed)
    {
        var backend = weight.Backend;
        int m = weight.Shape[0], n = weight.Shape[1];
        if (options.Init == LoraInit.PissaRandomized)
        {
            using var u = backend.Allocate(m, rank);
            using var s = backend.Allocate(rank);
            using var vt = backend.Allocate(rank, n);
            backend.TruncatedSvd(u, s, vt, weight, new TruncatedSvdOptions(PowerIterations: options.PissaIterations, Seed: seed));
            return (u.ToArray(), s.ToArray(), vt.ToArray());
        }
        int k = Math.Min(m, n);
        using var uf = backend.Allocate(m, k);
        using var sf = backend.Allocate(k);
        using var vtf = backend.Allocate(k, n);
        backend.Svd(uf, sf, vtf, weight);
        var uh = uf.ToArray();
        var ur = new float[m * rank];
        for (int i = 0; i < m; i++) Array.Copy(uh, i * k, ur, i * rank, rank);
        return (ur, sf.ToArray()[..rank], vtf.ToArray()[..(rank * n)]);
    }
}

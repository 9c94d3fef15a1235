using System.Runtime.CompilerServices;

namespace LoraRuntime.Cpu.Linalg;

/// <summary>
/// One merge of the bidiagonal divide and conquer (after Gu and Eisenstat; LAPACK's lasd1–lasd3). The block
/// B (ns × ns + sqre) at r0 is [B₁ 0; α·e_nlᵀ β·e_{nl+1}ᵀ; 0 B₂] with B₁ = U₁[D₁ 0]V₁ᵀ (nl × nl + 1) and
/// B₂ = U₂[D₂ 0]V₂ᵀ (nr × nr + sqre) solved. Then B = diag(U₁, 1, U₂)·M·diag(V₁, V₂)ᵀ where M, after rotating the two
/// null columns into one, is the arrow e₀·zᵀ + diag(0, d₁, …) with z = (α·V₁'s last row, β·V₂'s first row). Small
/// z_j and near-equal d_j deflate (their vectors stay unit vectors, rotated); the rest come from the secular equation
/// with Löwner's ẑ. The new vectors are the old blocks times the small ones: four GEMMs.
/// </summary>
internal static unsafe class BidiagonalMerge
{
    private const double Eps = 1.1102230246251565e-16;

    /// <summary>
    /// Merges the solved halves of the block at r0 of the global U (ldu) and V (ldv) and values d. On return
    /// d[r0..r0+ns) holds the block's singular values in the order of its U and V columns (unsorted), and when sqre
    /// V's column ns of the block is B's null vector.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Merge(LinalgContext ctx, double* d, double* u, int ldu, double* v, int ldv, int r0, int ns, int nl, int sqre,
        double alpha, double beta)
    {
        int nr = ns - nl - 1, ms = ns + sqre;
        double* u1 = u + r0 + (nint)r0 * ldu, u2 = u1 + (nl + 1) + (nint)(nl + 1) * ldu;
        double* v1 = v + r0 + (nint)r0 * ldv, v2 = v1 + (nl + 1) + (nint)(nl + 1) * ldv;
        var arena = ctx.Arena;
        var mark = arena.Mark();

        // Sorted coordinates: entry 0 is the middle row (U) and the combined null column (V); entries 1.. are the
        // halves' singular values ascending. basis[j] is entry j's column in the parent block (its U row).
        int* basis = arena.TakeInts(ns);
        double* dd = arena.Take(ns), zz = arena.Take(ns);
        basis[0] = nl;
        for (int b = 0, j = 1; b < ns; b++)
            if (b != nl) basis[j++] = b;
        for (int j = 1; j < ns; j++) dd[j] = d[r0 + basis[j]];
        new Span<double>(dd + 1, ns - 1).Sort(new Span<int>(basis + 1, ns - 1));
        dd[0] = 0;
        for (int j = 1; j < ns; j++)
        {
            int b = basis[j];
            zz[j] = b < nl ? alpha * v1[nl + (nint)b * ldv] : beta * v2[(nint)(b - nl - 1) * ldv];
        }
        double za = alpha * v1[nl + (nint)nl * ldv], zb = sqre == 1 ? beta * v2[(nint)nr * ldv] : 0;
        double z0 = Math.Sqrt(za * za + zb * zb);
        double c0 = z0 == 0 ? 1 : za / z0, s0 = z0 == 0 ? 0 : zb / z0;
        zz[0] = z0;

        // Deflation.
        double dmax = Math.Max(Math.Abs(alpha), Math.Abs(beta));
        for (int j = 1; j < ns; j++) dmax = Math.Max(dmax, dd[j]);
        double tol = 8 * Eps * dmax;
        if (zz[0] < tol) zz[0] = tol;
        double* value = arena.Take(ns);   // the singular value each sorted entry ends with when deflated
        int* deflated = arena.TakeInts(ns);
        int* rotKeep = arena.TakeInts(ns), rotDrop = arena.TakeInts(ns), rotVOnly = arena.TakeInts(ns);
        double* rotC = arena.Take(ns), rotS = arena.Take(ns);
        int rotations = 0;
        for (int j = 0; j < ns; j++)
        {
            value[j] = dd[j];
            deflated[j] = j > 0 && Math.Abs(zz[j]) <= tol ? 1 : 0;
        }
        for (int j = 1, prev = 0; j < ns; j++)
        {
            if (deflated[j] != 0) continue;
            if (dd[j] - dd[prev] <= tol)
            {
                // Two poles (nearly) coincide: rotate their z into one and deflate the other.
                int keep = prev == 0 ? 0 : j, drop = prev == 0 ? j : prev;
                double r = Math.Sqrt(zz[keep] * zz[keep] + zz[drop] * zz[drop]);
                double c = zz[keep] / r, s = zz[drop] / r;
                rotKeep[rotations] = keep; rotDrop[rotations] = drop; rotC[rotations] = c; rotS[rotations] = s;
                // Against the zero pole only V rotates: U's entry 0 is the middle row, which has no diagonal.
                rotVOnly[rotations++] = prev == 0 ? 1 : 0;
                zz[keep] = r;
                zz[drop] = 0;
                deflated[drop] = 1;
                if (prev == 0)
                {
                    value[j] = c * dd[j];
                    continue;
                }
            }
            prev = j;
        }

        // The secular equation over the entries that did not deflate.
        int* live = arena.TakeInts(ns);
        int k = 0;
        for (int j = 0; j < ns; j++)
            if (deflated[j] == 0) live[k++] = j;
        double* dk = arena.Take(k), zk = arena.Take(k), tau = arena.Take(k), zHat = arena.Take(k);
        double* scratch = arena.Take((long)k * ctx.Workers.Pool.ThreadCount);
        int* origin = arena.TakeInts(k);
        for (int q = 0; q < k; q++)
        {
            dk[q] = dd[live[q]];
            zk[q] = zz[live[q]];
        }
        ctx.Secular.Solve(k, dk, zk, tau, origin, zHat, scratch);

        // The small vectors in sorted coordinates: roots first, then the deflated entries as unit vectors.
        double* wu = arena.Zeroed((long)ns * ns), wv = arena.Zeroed((long)ms * ms);
        double* sigma = arena.Take(ns);
        for (int q = 0; q < k; q++) sigma[q] = dk[origin[q]] + tau[q];
        ctx.Secular.Vectors(live, wu, ns, wv, ms);
        for (int j = 0, col = k; j < ns; j++)
        {
            if (deflated[j] == 0) continue;
            wu[j + (nint)col * ns] = 1;
            wv[j + (nint)col * ms] = 1;
            sigma[col++] = value[j];
        }
        // Back from the deflation rotations' basis, last rotation first.
        for (int t = rotations - 1; t >= 0; t--)
        {
            RotateRows(wv, ms, ns, rotKeep[t], rotDrop[t], rotC[t], rotS[t]);
            if (rotVOnly[t] == 0) RotateRows(wu, ns, ns, rotKeep[t], rotDrop[t], rotC[t], rotS[t]);
        }

        // Into the parent block's coordinates, then times the halves' vectors.
        double* cuMat = arena.Take((long)ns * ns), cvMat = arena.Zeroed((long)ms * ms);
        for (int col = 0; col < ns; col++)
        {
            double* src = wu + (nint)col * ns, dst = cuMat + (nint)col * ns;
            for (int j = 0; j < ns; j++) dst[basis[j]] = src[j];
            double* srcV = wv + (nint)col * ms, dstV = cvMat + (nint)col * ms;
            for (int j = 1; j < ns; j++) dstV[basis[j]] = srcV[j];
            dstV[nl] = c0 * srcV[0];
            if (sqre == 1) dstV[ms - 1] = s0 * srcV[0];
        }
        if (sqre == 1)
        {
            // The other combination of the two null columns is the merged block's null vector.
            cvMat[nl + (nint)ns * ms] = -s0;
            cvMat[ms - 1 + (nint)ns * ms] = c0;
        }
        var gemm = ctx.Gemm;
        gemm.Run(false, false, nl, ns, nl, 1, u1, ldu, cuMat, ns, 0, wu, ns);
        for (int col = 0; col < ns; col++) wu[nl + (nint)col * ns] = cuMat[nl + (nint)col * ns];
        gemm.Run(false, false, nr, ns, nr, 1, u2, ldu, cuMat + nl + 1, ns, 0, wu + nl + 1, ns);
        gemm.Run(false, false, nl + 1, ms, nl + 1, 1, v1, ldv, cvMat, ms, 0, wv, ms);
        gemm.Run(false, false, nr + sqre, ms, nr + sqre, 1, v2, ldv, cvMat + nl + 1, ms, 0, wv + nl + 1, ms);
        for (int col = 0; col < ns; col++)
            new ReadOnlySpan<double>(wu + (nint)col * ns, ns).CopyTo(new Span<double>(u1 + (nint)col * ldu, ns));
        for (int col = 0; col < ms; col++)
            new ReadOnlySpan<double>(wv + (nint)col * ms, ms).CopyTo(new Span<double>(v1 + (nint)col * ldv, ms));
        new ReadOnlySpan<double>(sigma, ns).CopyTo(new Span<double>(d + r0, ns));
        arena.Release(mark);
    }

    /// <summary>Rows (keep, drop) of the rows×cols column-major W: (w_k, w_p) ← (c·w_k − s·w_p, s·w_k + c·w_p).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RotateRows(double* w, int rows, int cols, int keep, int drop, double c, double s)
    {
        for (int col = 0; col < cols; col++)
        {
            double* x = w + (nint)col * rows;
            double wk = x[keep], wp = x[drop];
            x[keep] = c * wk - s * wp;
            x[drop] = s * wk + c * wp;
        }
    }
}

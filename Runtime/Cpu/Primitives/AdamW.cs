using System.Runtime.CompilerServices;

namespace LoraRuntime.Cpu.Primitives;

/// <summary>
/// One AdamW step as PyTorch computes it (decoupled weight decay applied to the parameter before the Adam update):
/// p ← p·(1 − lr·wd); m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²; p ← p − (lr / bc1)·m / (√v / √bc2 + ε).
/// </summary>
internal unsafe struct AdamWOp : IRangeOp, ISimdOp
{
    public float* Parameters, Gradients, M, V;
    public float Decay, Beta1, Beta2, StepSize, InverseSqrtCorrection2, Epsilon;

    /// <summary>The operator for one step; bias corrections are computed in double (β^step for large steps).</summary>
    public static AdamWOp Create(float learningRate, float beta1, float beta2, float epsilon, float weightDecay, int step)
    {
        double correction1 = 1 - Math.Pow(beta1, step);
        double correction2 = 1 - Math.Pow(beta2, step);
        return new AdamWOp
        {
            Decay = (float)(1 - (double)learningRate * weightDecay),
            Beta1 = beta1,
            Beta2 = beta2,
            StepSize = (float)(learningRate / correction1),
            InverseSqrtCorrection2 = (float)(1 / Math.Sqrt(correction2)),
            Epsilon = epsilon,
        };
    }

    public readonly void Run(long start, long end) => SimdLoop.Run(this, start, end);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly void Invoke<TV>(long i) where TV : struct, ISimd<TV>
    {
        var g = TV.Load(Gradients + i);
        var m = TV.MultiplyAdd(TV.Load(M + i), TV.Splat(Beta1), g * TV.Splat(1 - Beta1));
        var v = TV.MultiplyAdd(TV.Load(V + i), TV.Splat(Beta2), g * g * TV.Splat(1 - Beta2));
        var denominator = TV.MultiplyAdd(TV.Sqrt(v), TV.Splat(InverseSqrtCorrection2), TV.Splat(Epsilon));
        var p = TV.MultiplyAdd(m / denominator, TV.Splat(-StepSize), TV.Load(Parameters + i) * TV.Splat(Decay));
        m.Store(M + i);
        v.Store(V + i);
        p.Store(Parameters + i);
    }
}

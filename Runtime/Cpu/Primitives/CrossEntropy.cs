using System.Numerics.Tensors;

namespace LoraRuntime.Cpu.Primitives;

/// <summary>
/// probs = softmax(logits) per row and loss = −log probs[target], taken as log-sum-exp − logit[target] =
/// log Σ exp(x − max) + (max − x[target]), which stays finite where probs[target] underflows to 0.
/// </summary>
internal unsafe struct CrossEntropyForwardOp : IRangeOp
{
    public float* Losses, Probs, Logits;
    public int* Targets;
    public int Classes;

    public readonly void Run(long start, long end)
    {
        for (long r = start; r < end; r++)
        {
            float* logits = Logits + r * Classes;
            float sum = Softmax.Row(Probs + r * Classes, logits, Classes, out float max);
            int target = Targets[r];
            Losses[r] = target < 0 ? 0 : (float)(Math.Log(sum) + ((double)max - logits[target]));
        }
    }
}

/// <summary>dLogits[n] += (probs[n] − onehot(target)) · dLosses[n]; ignored rows (negative target) get nothing.</summary>
internal unsafe struct CrossEntropyBackwardOp : IRangeOp
{
    public float* DLogits, DLosses, Probs;
    public int* Targets;
    public int Classes;

    public readonly void Run(long start, long end)
    {
        for (long r = start; r < end; r++)
        {
            int target = Targets[r];
            if (target < 0) continue;
            float scale = DLosses[r];
            var dLogits = new Span<float>(DLogits + r * Classes, Classes);
            TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(Probs + r * Classes, Classes), scale, dLogits, dLogits);
            dLogits[target] -= scale;
        }
    }
}

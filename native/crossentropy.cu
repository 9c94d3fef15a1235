// Cross-entropy over rows of V logits, one block per row. A negative target ignores the row.
#include "common.cuh"

extern "C" __global__ void crossentropy_forward(float* losses, float* probs, const float* logits, const int* targets, int classes)
{
    i64 at = (i64)blockIdx.x * classes;
    float max = LORA_NEG_INF;
    for (int j = threadIdx.x; j < classes; j += blockDim.x) max = fmaxf(max, logits[at + j]);
    max = lora_block_max(max);
    double sum = 0.0;
    for (int j = threadIdx.x; j < classes; j += blockDim.x)
    {
        float e = expf(logits[at + j] - max);
        probs[at + j] = e;
        sum += e;
    }
    sum = lora_block_sum(sum);
    float inverse = (float)(1.0 / sum);
    for (int j = threadIdx.x; j < classes; j += blockDim.x) probs[at + j] *= inverse;
    if (threadIdx.x == 0)
    {
        int target = targets[blockIdx.x];
        losses[blockIdx.x] = target < 0 ? 0.0f : (float)(log(sum) + ((double)max - (double)logits[at + target]));
    }
}

// dLogits[n] += (probs[n] − onehot(target))·dLosses[n].
extern "C" __global__ void crossentropy_backward(float* dLogits, const float* dLosses, const float* probs, const int* targets, int classes)
{
    int target = targets[blockIdx.x];
    if (target < 0) return;
    i64 at = (i64)blockIdx.x * classes;
    float scale = dLosses[blockIdx.x];
    for (int j = threadIdx.x; j < classes; j += blockDim.x)
    {
        float v = fmaf(probs[at + j], scale, dLogits[at + j]);
        if (j == target) v -= scale;
        dLogits[at + j] = v;
    }
}

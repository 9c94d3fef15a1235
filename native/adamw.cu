// One AdamW step in place; the bias corrections and the decay are folded into scalars on the host, as on the CPU.
#include "common.cuh"

extern "C" __global__ void adamw_step(float* parameters, const float* gradients, float* m, float* v, float decay, float beta1,
    float oneMinusBeta1, float beta2, float oneMinusBeta2, float stepSize, float inverseSqrtCorrection2, float epsilon, i64 n)
{
    LORA_FOR(i, n)
    {
        float g = gradients[i];
        float mi = fmaf(m[i], beta1, g * oneMinusBeta1);
        float vi = fmaf(v[i], beta2, g * g * oneMinusBeta2);
        float denominator = fmaf(sqrtf(vi), inverseSqrtCorrection2, epsilon);
        parameters[i] = fmaf(mi / denominator, -stepSize, parameters[i] * decay);
        m[i] = mi;
        v[i] = vi;
    }
}

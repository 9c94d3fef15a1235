// GELU in its tanh form, written as x·σ(2u) with u = √(2/π)·(x + 0.044715·x³), exactly as the CPU path computes it.
#include "common.cuh"

#define GELU_SQRT_2_OVER_PI 0.7978845608028654f
#define GELU_CUBIC 0.044715f
#define GELU_DERIVATIVE_CLAMP 10.0f

// σ(2u) and e = exp(−2u).
__device__ __forceinline__ float gelu_sigmoid(float x, float* e)
{
    float minusTwoU = x * fmaf(x * x, -2.0f * GELU_SQRT_2_OVER_PI * GELU_CUBIC, -2.0f * GELU_SQRT_2_OVER_PI);
    *e = expf(minusTwoU);
    return 1.0f / (1.0f + *e);
}

extern "C" __global__ void gelu_forward(float* out, const float* in, i64 n)
{
    LORA_FOR(i, n)
    {
        float x = in[i], e;
        out[i] = x * gelu_sigmoid(x, &e);
    }
}

// dInput += GELU′(input)·dOutput; past |x| = 10 the derivative is 0 or 1 to float precision, and clamping keeps exp finite.
extern "C" __global__ void gelu_backward(float* dInput, const float* input, const float* dOutput, i64 n)
{
    LORA_FOR(i, n)
    {
        float x = fminf(fmaxf(input[i], -GELU_DERIVATIVE_CLAMP), GELU_DERIVATIVE_CLAMP), e;
        float s = gelu_sigmoid(x, &e);
        float du = fmaf(x * x, 2.0f * GELU_SQRT_2_OVER_PI * 3.0f * GELU_CUBIC, 2.0f * GELU_SQRT_2_OVER_PI);
        float derivative = s * fmaf(x * (e * s), du, 1.0f);
        dInput[i] = fmaf(derivative, dOutput[i], dInput[i]);
    }
}

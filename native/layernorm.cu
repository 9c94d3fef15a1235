// Layer normalisation over rows of C channels: forward and the input gradient one block per row, the weight and
// bias gradients one thread per channel (rows in order, so the sums are deterministic).
#include "common.cuh"

extern "C" __global__ void layernorm_forward(float* output, float* mean, float* rstd, const float* input, const float* weight,
    const float* bias, int channels, float epsilon)
{
    i64 at = (i64)blockIdx.x * channels;
    const float* x = input + at;
    double sum = 0.0;
    for (int j = threadIdx.x; j < channels; j += blockDim.x) sum += x[j];
    float mu = (float)(lora_block_sum(sum) / channels);
    double squares = 0.0;
    for (int j = threadIdx.x; j < channels; j += blockDim.x)
    {
        double d = (double)x[j] - mu;
        squares += d * d;
    }
    float variance = (float)(lora_block_sum(squares) / channels);
    float r = 1.0f / sqrtf(variance + epsilon);
    for (int j = threadIdx.x; j < channels; j += blockDim.x) output[at + j] = fmaf((x[j] - mu) * r, weight[j], bias[j]);
    if (threadIdx.x == 0)
    {
        mean[blockIdx.x] = mu;
        rstd[blockIdx.x] = r;
    }
}

// dInput += rstd·(w⊙dy − mean(w⊙dy) − n̂·mean(w⊙dy⊙n̂)) with n̂ = (x − mean)·rstd.
extern "C" __global__ void layernorm_backward_input(float* dInput, const float* dOutput, const float* input, const float* weight,
    const float* mean, const float* rstd, int channels)
{
    i64 at = (i64)blockIdx.x * channels;
    float mu = mean[blockIdx.x], r = rstd[blockIdx.x];
    double g = 0.0, gn = 0.0;
    for (int j = threadIdx.x; j < channels; j += blockDim.x)
    {
        float gradient = weight[j] * dOutput[at + j];
        g += gradient;
        gn += (double)gradient * ((input[at + j] - mu) * r);
    }
    float meanG = (float)(lora_block_sum(g) / channels);
    float meanGN = (float)(lora_block_sum(gn) / channels);
    for (int j = threadIdx.x; j < channels; j += blockDim.x)
    {
        float gradient = weight[j] * dOutput[at + j];
        float normalized = (input[at + j] - mu) * r;
        float centred = gradient - fmaf(normalized, meanGN, meanG);
        dInput[at + j] = fmaf(centred, r, dInput[at + j]);
    }
}

// dWeight[j] += Σ_n n̂[n, j]·dy[n, j]; dBias[j] += Σ_n dy[n, j].
extern "C" __global__ void layernorm_backward_parameters(float* dWeight, float* dBias, const float* dOutput, const float* input,
    const float* mean, const float* rstd, i64 rows, int channels)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= channels) return;
    float w = dWeight[j], b = dBias[j];
    for (i64 n = 0; n < rows; n++)
    {
        float dy = dOutput[n * channels + j];
        w = fmaf((input[n * channels + j] - mean[n]) * rstd[n], dy, w);
        b += dy;
    }
    dWeight[j] = w;
    dBias[j] = b;
}

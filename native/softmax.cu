// Row softmax, one block per row of cols. Causal: rows are grouped in matrices of `queries` rows that are the last
// queries of cols positions, so row r sees columns j < (r % queries) + 1 + (cols − queries); the rest are 0.
#include "common.cuh"

__device__ __forceinline__ int softmax_visible(i64 row, int queries, int cols, int causal)
{
    return causal ? (int)(row % queries) + 1 + (cols - queries) : cols;
}

// output may be input itself: each thread reads an element before it writes it.
extern "C" __global__ void softmax_forward(float* output, const float* input, int cols, int queries, int causal)
{
    i64 row = blockIdx.x;
    const float* x = input + row * cols;
    float* y = output + row * cols;
    int visible = softmax_visible(row, queries, cols, causal);
    float max = LORA_NEG_INF;
    for (int j = threadIdx.x; j < visible; j += blockDim.x) max = fmaxf(max, x[j]);
    max = lora_block_max(max);
    double sum = 0.0;
    for (int j = threadIdx.x; j < visible; j += blockDim.x)
    {
        float e = expf(x[j] - max);
        y[j] = e;
        sum += e;
    }
    float inverse = (float)(1.0 / lora_block_sum(sum));
    for (int j = threadIdx.x; j < cols; j += blockDim.x) y[j] = j < visible ? y[j] * inverse : 0.0f;
}

// dInput += p ⊙ (dOutput − Σ p ⊙ dOutput) over the visible columns.
extern "C" __global__ void softmax_backward(float* dInput, const float* output, const float* dOutput, int cols, int queries, int causal)
{
    i64 at = (i64)blockIdx.x * cols;
    int visible = softmax_visible(blockIdx.x, queries, cols, causal);
    double partial = 0.0;
    for (int j = threadIdx.x; j < visible; j += blockDim.x) partial += (double)output[at + j] * dOutput[at + j];
    float dot = (float)lora_block_sum(partial);
    for (int j = threadIdx.x; j < visible; j += blockDim.x)
        dInput[at + j] = fmaf(output[at + j], dOutput[at + j] - dot, dInput[at + j]);
}

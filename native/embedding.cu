// Embedding lookup and its gradient. The backward pass gives each thread one channel and walks the ids in order,
// so repeated ids accumulate deterministically (no atomics).
#include "common.cuh"

extern "C" __global__ void embedding_forward(float* output, const int* ids, const float* table, i64 count, int channels)
{
    i64 n = count * channels;
    LORA_FOR(i, n)
    {
        i64 row = i / channels;
        output[i] = table[(i64)ids[row] * channels + (i - row * channels)];
    }
}

extern "C" __global__ void embedding_backward(float* dTable, const float* dOutput, const int* ids, i64 count, int channels)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= channels) return;
    for (i64 n = 0; n < count; n++) dTable[(i64)ids[n] * channels + j] += dOutput[n * channels + j];
}

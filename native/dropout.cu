// Inverted dropout with the counter-based mask of Backend.DropoutBits: element i is kept when bits(seed, first + i) >> 8 ≥
// threshold. Bit for bit the same mask as every other backend.
#include "common.cuh"

// Chris Wellons' lowbias32.
__device__ __forceinline__ u32 dropout_mix(u32 x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

__device__ __forceinline__ u32 dropout_bits(u64 seed, u64 index)
{
    u32 x = dropout_mix((u32)index ^ (u32)seed);
    return dropout_mix(x + ((u32)(index >> 32) ^ (u32)(seed >> 32)));
}

// output = input ⊙ keep·scale, or output += that when accumulate (the backward pass). output may be input itself.
extern "C" __global__ void dropout_apply(float* output, const float* input, u64 seed, u64 first, u32 threshold, float keepScale, int accumulate, i64 n)
{
    LORA_FOR(i, n)
    {
        bool keep = (dropout_bits(seed, first + (u64)i) >> 8) >= threshold;
        float value = keep ? input[i] * keepScale : 0.0f;
        output[i] = accumulate ? output[i] + value : value;
    }
}

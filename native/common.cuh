// Shared device helpers, passed to NVRTC as the header "common.cuh" (no system headers: NVRTC has none of them).
#pragma once

typedef long long i64;
typedef unsigned long long u64;
typedef unsigned int u32;

// The largest finite float: |x| <= FLT_MAX is false exactly for NaN and the infinities.
#define LORA_FLT_MAX 3.402823466e+38f
#define LORA_NEG_INF __int_as_float(0xff800000)

__device__ __forceinline__ bool lora_isfinite(float x) { return fabsf(x) <= LORA_FLT_MAX; }

// A grid-stride loop over [0, n).
#define LORA_FOR(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

template <typename T> __device__ __forceinline__ T lora_warp_sum(T v)
{
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__device__ __forceinline__ float lora_warp_max(float v)
{
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// Block-wide sums (float or double) and maximum: blockDim.x a multiple of 32, at most 1024; every thread gets the
// result. Safe to call several times in a row: the leading barrier keeps one call's shared slots from being
// overwritten by the next. Sums over a row are accumulated in double by the kernels, so their rounding stays below
// the float32 result's.
template <typename T> __device__ T lora_block_sum(T v)
{
    __shared__ T partial[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = lora_warp_sum(v);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0)
    {
        T w = lane < warps ? partial[lane] : (T)0;
        w = lora_warp_sum(w);
        if (lane == 0) partial[0] = w;
    }
    __syncthreads();
    return partial[0];
}

__device__ float lora_block_max(float v)
{
    __shared__ float partial[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = lora_warp_max(v);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0)
    {
        float w = lane < warps ? partial[lane] : LORA_NEG_INF;
        w = lora_warp_max(w);
        if (lane == 0) partial[0] = w;
    }
    __syncthreads();
    return partial[0];
}

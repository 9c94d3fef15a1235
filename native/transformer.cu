// The Llama-family operations: RMS norm (forward and the input gradient one block per row, the weight gradient one
// thread per channel, rows in order so the sums are deterministic), the gated SiLU of the MLP, and rotary position
// embeddings in the rotate-half convention. Each computes what the CPU path computes.
#include "common.cuh"

#define SILU_CLAMP 80.0f

extern "C" __global__ void rmsnorm_forward(float* output, float* rstd, const float* input, const float* weight, int channels, float epsilon)
{
    i64 at = (i64)blockIdx.x * channels;
    const float* x = input + at;
    double squares = 0.0;
    for (int j = threadIdx.x; j < channels; j += blockDim.x) squares += (double)x[j] * x[j];
    float r = 1.0f / sqrtf((float)(lora_block_sum(squares) / channels) + epsilon);
    for (int j = threadIdx.x; j < channels; j += blockDim.x) output[at + j] = x[j] * r * weight[j];
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}

// dInput += rstd·(w⊙dy − n̂·mean(w⊙dy⊙n̂)) with n̂ = x·rstd.
extern "C" __global__ void rmsnorm_backward_input(float* dInput, const float* dOutput, const float* input, const float* weight,
    const float* rstd, int channels)
{
    i64 at = (i64)blockIdx.x * channels;
    float r = rstd[blockIdx.x];
    double gn = 0.0;
    for (int j = threadIdx.x; j < channels; j += blockDim.x) gn += (double)(weight[j] * dOutput[at + j]) * (input[at + j] * r);
    float meanGN = (float)(lora_block_sum(gn) / channels);
    for (int j = threadIdx.x; j < channels; j += blockDim.x)
    {
        float centred = weight[j] * dOutput[at + j] - input[at + j] * r * meanGN;
        dInput[at + j] = fmaf(centred, r, dInput[at + j]);
    }
}

// dWeight[j] += Σ_n n̂[n, j]·dy[n, j].
extern "C" __global__ void rmsnorm_backward_weight(float* dWeight, const float* dOutput, const float* input, const float* rstd, i64 rows, int channels)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= channels) return;
    float w = dWeight[j];
    for (i64 n = 0; n < rows; n++) w = fmaf(input[n * channels + j] * rstd[n], dOutput[n * channels + j], w);
    dWeight[j] = w;
}

// output [N, I] = silu(gate)·up over rows of [gate | up].
extern "C" __global__ void gated_silu_forward(float* output, const float* input, i64 rows, int width)
{
    LORA_FOR(i, rows * width)
    {
        i64 r = i / width, c = i - r * width;
        float g = input[2 * r * width + c], u = input[(2 * r + 1) * width + c];
        float e = expf(-fminf(fmaxf(g, -SILU_CLAMP), SILU_CLAMP));
        output[i] = g / (1.0f + e) * u;
    }
}

// dgate = dy·up·silu′(gate), dup = dy·silu(gate), stored; silu′(x) = s·(1 + x·e·s) with s = σ(x), e = exp(−x).
extern "C" __global__ void gated_silu_backward(float* dInput, const float* input, const float* dOutput, i64 rows, int width)
{
    LORA_FOR(i, rows * width)
    {
        i64 r = i / width, c = i - r * width, gate = 2 * r * width + c, up = gate + width;
        float g = input[gate], u = input[up], dy = dOutput[i];
        float x = fminf(fmaxf(g, -SILU_CLAMP), SILU_CLAMP), e = expf(-x), s = 1.0f / (1.0f + e);
        float derivative = s * fmaf(x * e, s, 1.0f);
        dInput[gate] = dy * u * derivative;
        dInput[up] = dy * (g * s);
    }
}

// One thread per (row, head, frequency i < half): the pair (i, i + half) of that head rotated by the row's angle
// (by its negative with inverse).
extern "C" __global__ void rotary_apply(float* rows, const int* positions, const float* cosTable, const float* sinTable, i64 count,
    int rowStride, int heads, int headSize, int half, int inverse)
{
    LORA_FOR(i, count * heads * half)
    {
        i64 r = i / ((i64)heads * half);
        int rest = (int)(i - r * heads * half), h = rest / half, f = rest - h * half;
        i64 table = (i64)positions[r] * half + f;
        float c = cosTable[table], s = inverse ? -sinTable[table] : sinTable[table];
        float* x = rows + r * rowStride + (i64)h * headSize;
        float a = x[f], b = x[f + half];
        x[f] = a * c - b * s;
        x[f + half] = fmaf(a, s, b * c);
    }
}

// Qwen3's q/k norms: RMS norm of heads [first, first + heads) inside rows, in place; one block per (row, head).
extern "C" __global__ void head_rmsnorm_forward(float* rows, float* rstd, const float* weight, i64 rowStride, int first, int heads, int headSize,
    float epsilon)
{
    i64 item = blockIdx.x, r = item / heads;
    float* x = rows + r * rowStride + (i64)(first + item % heads) * headSize;
    double squares = 0.0;
    for (int j = threadIdx.x; j < headSize; j += blockDim.x) squares += (double)x[j] * x[j];
    float s = 1.0f / sqrtf((float)(lora_block_sum(squares) / headSize) + epsilon);
    __syncthreads();
    for (int j = threadIdx.x; j < headSize; j += blockDim.x) x[j] = x[j] * s * weight[j];
    if (threadIdx.x == 0) rstd[item] = s;
}

// dy ← rstd·(w⊙dy − n̂·mean(w⊙dy⊙n̂)) in place, n̂ = x·rstd; one block per (row, head).
extern "C" __global__ void head_rmsnorm_backward_input(float* dRows, const float* input, const float* weight, const float* rstd, i64 rowStride,
    int first, int heads, int headSize)
{
    i64 item = blockIdx.x, at = item / heads * rowStride + (i64)(first + item % heads) * headSize;
    float s = rstd[item];
    double gn = 0.0;
    for (int j = threadIdx.x; j < headSize; j += blockDim.x) gn += (double)(weight[j] * dRows[at + j]) * (input[at + j] * s);
    float meanGN = (float)(lora_block_sum(gn) / headSize);
    for (int j = threadIdx.x; j < headSize; j += blockDim.x)
        dRows[at + j] = (weight[j] * dRows[at + j] - input[at + j] * s * meanGN) * s;
}

// dWeight[j] += Σ_(row, head) n̂·dy, one thread per column (before the input pass overwrites dy).
extern "C" __global__ void head_rmsnorm_backward_weight(float* dWeight, const float* dRows, const float* input, const float* rstd, i64 rowStride,
    i64 items, int first, int heads, int headSize)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= headSize) return;
    float w = dWeight[j];
    for (i64 item = 0; item < items; item++)
    {
        i64 at = item / heads * rowStride + (i64)(first + item % heads) * headSize + j;
        w = fmaf(input[at] * rstd[item], dRows[at], w);
    }
    dWeight[j] = w;
}
